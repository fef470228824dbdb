"""Entry points, presets, sweeps and plots (no algorithm logic)."""
