"""Test helper: the Gymnasium-Robotics ``mamujoco_v1`` reference, driven from given qpos/qvel.

CoupledHalfCheetah: the reference reads ``data.ten_J[tendon][:2]``, which assumes the dense tendon
Jacobian of MuJoCo < 3.14; MuJoCo 4 stores it sparsely (``ten_J`` holds the non-zeros, the sparsity lives
in ``model.ten_J_rownnz / rowadr / colind``). For that task the reference's own observation code is run on
a view of the data whose ``ten_J`` is rebuilt dense with ``mujoco.mju_sparse2dense``; physics, reward and
everything else are the reference's unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

mamujoco_v1 = pytest.importorskip("gymnasium_robotics.envs.multiagent_mujoco.mamujoco_v1")

import mujoco  # noqa: E402
from gymnasium.wrappers import TimeLimit  # noqa: E402
from gymnasium_robotics.envs.multiagent_mujoco.coupled_half_cheetah import CoupledHalfCheetahEnv  # noqa: E402
from gymnasium_robotics.envs.multiagent_mujoco.mujoco_multi import MultiAgentMujocoEnv  # noqa: E402

from svnr_jax.envs.mamujoco.env import tendons_below_floor  # noqa: E402


class DenseTendonData:
    """Read-only view of ``MjData`` whose ``ten_J`` is dense ``[ntendon, nv]``."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData):
        self._data = data
        dense = np.zeros((model.ntendon, model.nv))
        if model.ntendon:
            mujoco.mju_sparse2dense(dense, data.ten_J, model.ten_J_rownnz, model.ten_J_rowadr, model.ten_J_colind)
        self.ten_J = dense

    def __getattr__(self, name):
        return getattr(self._data, name)


class _DenseCoupledHalfCheetah(CoupledHalfCheetahEnv):
    def _get_obs(self):
        real = self.data
        self.data = DenseTendonData(self.model, real)
        try:
            return super()._get_obs()
        finally:
            self.data = real


class _DenseMultiAgent(MultiAgentMujocoEnv):
    def _get_obs_agent(self, agent_id, data=None):
        if data is None:
            u = self.single_agent_env.unwrapped
            # index_only=True only skips body_fn, which CoupledHalfCheetah does not have
            data = DenseTendonData(u.model, u.data)
        return super()._get_obs_agent(agent_id, data)


def make_reference(scenario: str, agent_conf: str, agent_obsk: int = 1) -> MultiAgentMujocoEnv:
    """The reference env (MuJoCo compiler warnings silenced: they would write ``MUJOCO_LOG.TXT``)."""
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda msg: None)
    try:
        return _make_reference(scenario, agent_conf, agent_obsk)
    finally:
        mujoco.set_mju_user_warning(previous)


def _make_reference(scenario: str, agent_conf: str, agent_obsk: int) -> MultiAgentMujocoEnv:
    if scenario == "CoupledHalfCheetah":
        gym_env = TimeLimit(_DenseCoupledHalfCheetah(), max_episode_steps=1000)
        return _DenseMultiAgent(scenario, agent_conf, agent_obsk=agent_obsk, gym_env=gym_env)
    return mamujoco_v1.parallel_env(scenario, agent_conf, agent_obsk=agent_obsk)


class Reference:
    """The reference env with ``set(qpos, qvel)`` and array-in/array-out ``step``.

    ``solver`` (test-only): overrides the C model's constraint solver (``model.opt.solver``), e.g. Newton for
    Humanoid, whose XML asks for PGS, which MJX lacks — so a comparison measures the implementation rather
    than the solver choice.

    ``tendon_invweight_floor`` (test-only): raises the C model's ``tendon_invweight0`` of limited tendons to at
    least this value, the change our MJX model gets by default (``svnr_jax.envs.mamujoco.env`` docstring), so
    that a comparison measures the implementation at the same tendon-limit regularization."""

    def __init__(self, scenario: str, agent_conf: str, agent_obsk: int = 1, solver: mujoco.mjtSolver | None = None,
                 tendon_invweight_floor: float | None = None):
        self.env = make_reference(scenario, agent_conf, agent_obsk)
        self.env.reset(seed=0)
        self.agents = list(self.env.possible_agents)
        self.u = self.env.single_agent_env.unwrapped
        if solver is not None:
            self.u.model.opt.solver = solver
        if tendon_invweight_floor is not None:
            m = self.u.model
            m.tendon_invweight0[tendons_below_floor(m, tendon_invweight_floor)] = tendon_invweight_floor

    def set(self, qpos, qvel):
        self.env.reset(seed=0)
        self.u.set_state(np.asarray(qpos, np.float64), np.asarray(qvel, np.float64))

    def observe(self):
        obs = self.env._get_obs()
        return [np.asarray(obs[a]) for a in self.agents], np.asarray(self.env.state())

    def step(self, actions: list[np.ndarray]):
        """Returns (obs list, state, reward, terminated, truncated)."""
        joint = {a: np.asarray(x, np.float64) for a, x in zip(self.agents, actions, strict=True)}
        obs, rew, term, trunc, _ = self.env.step(joint)
        return (
            [np.asarray(obs[a]) for a in self.agents],
            np.asarray(self.env.state()),
            float(rew[self.agents[0]]),
            bool(term[self.agents[0]]),
            bool(trunc[self.agents[0]]),
        )

    def qpos_qvel(self):
        return self.u.data.qpos.copy(), self.u.data.qvel.copy()
