"""The device replay buffer: add wraps around, size caps, sampling reads only valid items."""

import jax
import jax.numpy as jnp
import numpy as np

from svnr_jax import replay


def test_add_wraps_and_caps_size():
    buf = replay.init({"x": jnp.zeros((2,)), "r": jnp.zeros(())}, 5)
    add = jax.jit(replay.add)
    buf = add(buf, {"x": jnp.ones((3, 2)), "r": jnp.arange(3.0)})
    assert int(buf.size) == 3 and int(buf.position) == 3
    buf = add(buf, {"x": 2 * jnp.ones((3, 2)), "r": jnp.arange(3.0, 6.0)})
    assert int(buf.size) == 5 and int(buf.position) == 1
    np.testing.assert_array_equal(buf.data["r"], [5.0, 1.0, 2.0, 3.0, 4.0])


def test_sample_only_valid_items_and_shapes():
    buf = replay.init({"r": jnp.zeros(()), "o": jnp.zeros((2, 3))}, 100)
    buf = replay.add(buf, {"r": jnp.arange(1.0, 5.0), "o": jnp.ones((4, 2, 3))})
    batch = jax.jit(replay.sample, static_argnums=2)(buf, jax.random.key(0), 256)
    assert batch["o"].shape == (256, 2, 3)
    assert set(np.unique(batch["r"]).tolist()) <= {1.0, 2.0, 3.0, 4.0}
    assert len(np.unique(batch["r"])) == 4


def test_vmapped_buffers_are_independent():
    def one(k):
        b = replay.init({"r": jnp.zeros(())}, 4)
        return replay.add(b, {"r": jax.random.normal(k, (2,))})

    bufs = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), 3))
    assert bufs.data["r"].shape == (3, 4)
    assert not np.allclose(bufs.data["r"][0], bufs.data["r"][1])
