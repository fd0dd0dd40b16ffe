"""Real TRL GRPOTrainer runs on CPU (tiny random Qwen2, no hub): SAWGRPOTrainer against the reference.

Each step records TRL's gathered rewards, the weights it aggregated with and its advantages; the test
recomputes the advantages in float64 from the rewards with `saw_verl.reference.reference_weights`
and TRL's aggregation formula (`GRPOTrainer._generate_and_score_completions`, trl 1.16).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

import saw_verl  # noqa: E402
from saw_verl.config import SawConfig  # noqa: E402
from saw_verl.errors import SawInputError  # noqa: E402
from cpu_harness.assets import PLAIN_TEMPLATE, build_tiny_model  # noqa: E402
from saw_verl.integrations.trl import SAWGRPOConfig, SAWGRPOTrainer  # noqa: E402
from saw_verl.reference import reference_weights  # noqa: E402

GENERATIONS = 4
TRL_EPS = 1e-4


def sum_mod5(completion_ids, **kwargs):
    """In {0, .25, ..., 1}; None (unscored) when both other functions are unscored too."""
    return [None if ids[0] % 4 == 0 and ids[-1] % 2 == 0 else (sum(ids) % 5) / 4 for ids in completion_ids]


def first_mod3(completion_ids, **kwargs):
    return [None if ids[0] % 4 == 0 else float(ids[0] % 3) for ids in completion_ids]


def constant(completion_ids, **kwargs):
    return [None if ids[0] % 4 == 0 else 0.5 for ids in completion_ids]


REWARD_FUNCS = [sum_mod5, first_mod3, constant]
ALPHA = [1.0, 0.5, 2.0]
REWARD_MIN = [0.0, -1.0, 0.0]


class Recording:
    """Mixin: keeps, per generation batch, TRL's rewards (N, K), the weights used and the advantages (N,)."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self.recorded = getattr(self, "recorded", []) + [{"rewards": rewards.clone(), "train": self.model.training}]
        return rewards

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.recorded[-1].update(weights=self.reward_weights.clone(), advantages=output["advantages"].clone())
        return output


class RecordingSAW(Recording, SAWGRPOTrainer):
    pass


class RecordingGRPO(Recording, GRPOTrainer):
    pass


class RawRewards(GRPOTrainer):
    """Keeps TRL's rewards as they reach SAWGRPOTrainer, before its conditions (below it in the MRO)."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self.raw_rewards = getattr(self, "raw_rewards", []) + [rewards.clone()]
        return rewards


class RecordingShapedSAW(Recording, SAWGRPOTrainer, RawRewards):
    pass


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen2"), chat_template=PLAIN_TEMPLATE)


def dataset(size=16):
    return Dataset.from_list([{"prompt": f"copy {i % 10}"} for i in range(size)])


def run(model_dir, tmp_path, trainer_class=RecordingSAW, config_class=SAWGRPOConfig, steps=3, funcs=REWARD_FUNCS,
        resume_from_checkpoint=None, **options):
    """Train `steps` steps of 4 prompts x 4 completions (3 tokens); returns the trainer."""
    options = {"reward_weights": ALPHA[: len(funcs)], "save_strategy": "no", **options}
    args = config_class(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", disable_tqdm=True,
        num_generations=GENERATIONS, per_device_train_batch_size=16, max_completion_length=3, max_steps=steps,
        learning_rate=1e-2, beta=0.0, logging_steps=1, seed=7, per_device_eval_batch_size=8, **options,
    )
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = trainer_class(model, funcs, args=args, train_dataset=dataset(), eval_dataset=dataset(8),
                            processing_class=AutoTokenizer.from_pretrained(model_dir))
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer


def assert_history_weights(train_steps, past, cfg):
    """Each training step's weights are w * alpha with w from the reference over `past` + the earlier steps."""
    past = list(past)
    for step in train_steps:
        weights, _, _, _ = reference_weights(step["rewards"], cfg, past=past)
        past.append(step["rewards"])
        coefficients = torch.tensor([w * a for w, a in zip(weights, ALPHA)], dtype=torch.float64)
        torch.testing.assert_close(step["weights"].double(), coefficients, rtol=1e-6, atol=1e-7)


def trl_aggregation(rewards, coefficients, aggregation):
    """TRL 1.16's advantages from rewards (N, K) and per-function coefficients, in float64."""
    rewards = rewards.double()
    coefficients = torch.as_tensor(coefficients, dtype=torch.float64)
    unscorable = torch.isnan(rewards).all(dim=1)

    def nanstd(x, dim):
        count = (~torch.isnan(x)).sum(dim=dim, keepdim=True)
        var = torch.nanmean((x - torch.nanmean(x, dim=dim, keepdim=True)) ** 2, dim=dim, keepdim=True)
        return (var * count / (count - 1)).sqrt()

    if aggregation == "sum_then_normalize":
        summed = (rewards * coefficients).nansum(dim=1)
        summed[unscorable] = math.nan
        grouped = summed.view(-1, GENERATIONS)
        advantages = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (nanstd(grouped, 1) + TRL_EPS)
    else:
        grouped = rewards.view(-1, GENERATIONS, rewards.shape[1])
        zscores = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (nanstd(grouped, 1) + TRL_EPS)
        summed = (zscores.view(-1, rewards.shape[1]) * coefficients).nansum(dim=1)
        summed[unscorable] = math.nan
        advantages = (summed - torch.nanmean(summed)) / (nanstd(summed, 0) + TRL_EPS)
    return torch.nan_to_num(advantages.flatten(), nan=0.0)


@pytest.mark.parametrize("estimator", ["saw_grpo", "saw_gdpo"])
def test_advantages_equal_trl_aggregation_with_reference_weights(model_dir, tmp_path, estimator):
    trainer = run(model_dir, tmp_path, saw_estimator=estimator, saw_reward_min=REWARD_MIN)
    cfg = SawConfig(("sum_mod5", "first_mod3", "constant"), mode=estimator.removeprefix("saw_"),
                    reward_min=REWARD_MIN, static_weights=ALPHA)
    train_steps = [step for step in trainer.recorded if step["train"]]
    assert len(train_steps) == 3
    for step in train_steps:
        weights, _, _, _ = reference_weights(step["rewards"], cfg)
        assert weights[2] == 0.0  # the constant reward
        coefficients = [w * a for w, a in zip(weights, ALPHA)]
        torch.testing.assert_close(step["weights"].double(), torch.tensor(coefficients, dtype=torch.float64),
                                   rtol=1e-6, atol=1e-7)
        expected = trl_aggregation(step["rewards"], coefficients, trainer.args.multi_objective_aggregation)
        torch.testing.assert_close(step["advantages"].double(), expected, rtol=1e-5, atol=1e-5)
    rewards = torch.cat([step["rewards"] for step in train_steps])
    nan_rows = torch.isnan(rewards)
    assert nan_rows.all(dim=1).any() and (nan_rows.any(dim=1) & ~nan_rows.all(dim=1)).any()  # both kinds ran

    logged = [entry for entry in trainer.state.log_history if "saw/constant/weight" in entry]
    assert len(logged) == 3 and all(entry["saw/constant/weight"] == 0.0 for entry in logged)
    assert {"saw/sum_mod5/cv", "saw/first_mod3/mean", "saw/first_mod3/std"} <= set(logged[0])
    for entry, step in zip(logged, train_steps):  # TRL's "reward" with the static weights
        static = (step["rewards"].double() * torch.tensor(ALPHA, dtype=torch.float64)).nansum(dim=1)
        static = static[~torch.isnan(step["rewards"]).all(dim=1)].mean().item()
        assert entry["saw/static_weighted_reward"] == pytest.approx(static, rel=1e-6)
        assert entry["saw/sum_mod5/mean"] == pytest.approx(torch.nanmean(step["rewards"][:, 0].double()).item())

    metrics = trainer.evaluate()
    eval_step = trainer.recorded[-1]
    assert not eval_step["train"] and torch.equal(eval_step["weights"], torch.tensor(ALPHA))  # static in eval
    assert not any(key.startswith("eval_saw/") for key in metrics)


@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_saw_dynamic_false_is_plain_grpo_trainer(model_dir, tmp_path, aggregation):
    plain = run(model_dir, tmp_path / "plain", RecordingGRPO, GRPOConfig, steps=2,
                multi_objective_aggregation=aggregation)
    saw = run(model_dir, tmp_path / "saw", saw_dynamic=False, multi_objective_aggregation=aggregation, steps=2)
    assert len(saw.recorded) == len(plain.recorded) == 2
    for ours, theirs in zip(saw.recorded, plain.recorded):
        assert torch.equal(ours["rewards"].nan_to_num(-1), theirs["rewards"].nan_to_num(-1))
        assert torch.equal(ours["weights"], theirs["weights"])
        assert torch.equal(ours["advantages"], theirs["advantages"])
    for (name, ours), theirs in zip(saw.model.named_parameters(), plain.model.parameters()):
        assert torch.equal(ours, theirs), name
    logged = [(ours, theirs) for ours, theirs in zip(saw.state.log_history, plain.state.log_history) if "reward" in ours]
    assert len(logged) == 2 and all(
        ours["saw/static_weighted_reward"] == pytest.approx(theirs["reward"]) for ours, theirs in logged)


def infinite_at_row_2(completion_ids, **kwargs):
    return [math.inf if row == 2 else 0.0 for row in range(len(completion_ids))]


def test_infinite_reward_names_function_and_row(model_dir, tmp_path):
    with pytest.raises(SawInputError, match=r"'infinite_at_row_2' returned inf for row 2 of the generation batch"):
        run(model_dir, tmp_path, steps=1, funcs=[sum_mod5, infinite_at_row_2])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"saw_reward_min": [0.0]}, r"saw_reward_min has 1 entries but there are 3 reward keys \['sum_mod5'"),
        ({"saw_conditions": {"sum_mod5": ["correct", 1.0]}}, r"saw_conditions\['sum_mod5'\]: unknown condition key "
         r"'correct'; the reward keys are \['sum_mod5', 'first_mod3', 'constant'\]"),
        ({"saw_weight_schedule": {0: [1.0, 1.0]}, "reward_weights": None},
         r"saw_weight_schedule: the weights at step 0 must be one per reward key \['sum_mod5', 'first_mod3', "),
        ({"saw_preset": "fast"}, "unknown saw_preset 'fast'"),
        ({"saw_delta": 0.0}, "saw_delta must be a finite number > 0"),
        ({"reward_weights": [1.0, -1.0, 1.0]}, "reward_weights: weight of 'first_mod3' is negative"),
    ],
)
def test_bad_options_raise_before_training(model_dir, tmp_path, options, message):
    with pytest.raises(SawInputError, match=message):
        run(model_dir, tmp_path, steps=0, **options)


def test_needs_a_saw_config(model_dir, tmp_path):
    with pytest.raises(TypeError, match="needs args=SAWGRPOConfig"):
        run(model_dir, tmp_path, SAWGRPOTrainer, GRPOConfig, steps=0)


def test_missing_trl_hook_is_a_clear_error(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(GRPOTrainer, "_calculate_rewards", lambda self, inputs, prompts: None)
    with pytest.raises(RuntimeError, match=r"overrides GRPOTrainer._calculate_rewards\('inputs', 'prompts', "):
        run(model_dir, tmp_path, steps=0)


HISTORY_CONFIG = SawConfig(("sum_mod5", "first_mod3", "constant"), mode="gdpo", reward_min=REWARD_MIN,
                           static_weights=ALPHA, history_decay=0.5)


def test_history_weights_follow_the_reference_over_past_batches(model_dir, tmp_path):
    trainer = run(model_dir, tmp_path, saw_estimator="saw_gdpo", saw_reward_min=REWARD_MIN, saw_history_decay=0.5)
    train_steps = [step for step in trainer.recorded if step["train"]]
    assert len(train_steps) == 3 and trainer.saw_history.steps == 3
    assert_history_weights(train_steps, [], HISTORY_CONFIG)
    logged = [entry for entry in trainer.state.log_history if "saw/sum_mod5/batch_cv" in entry]
    assert len(logged) == 3 and logged[-1]["saw/sum_mod5/batch_cv"] != pytest.approx(logged[-1]["saw/sum_mod5/cv"])
    trainer.evaluate()
    assert not trainer.recorded[-1]["train"] and trainer.saw_history.steps == 3  # evaluation leaves the pool alone


@pytest.mark.parametrize("restore_callbacks", [False, True])
def test_history_is_checkpointed_and_restored_on_resume(model_dir, tmp_path, restore_callbacks):
    options = dict(saw_estimator="saw_gdpo", saw_reward_min=REWARD_MIN, saw_history_decay=0.5,
                   save_strategy="steps", save_steps=2, restore_callback_states_from_checkpoint=restore_callbacks)
    first = run(model_dir, tmp_path, steps=2, **options)
    past = [step["rewards"] for step in first.recorded if step["train"]]
    resumed = run(model_dir, tmp_path, steps=3, resume_from_checkpoint=str(tmp_path / "checkpoint-2"), **options)
    train_steps = [step for step in resumed.recorded if step["train"]]
    assert len(train_steps) == 1 and resumed.saw_history.steps == 3
    assert_history_weights(train_steps, past, HISTORY_CONFIG)


def test_two_ranks_hold_the_same_history(model_dir, tmp_path):
    """torchrun, 2 CPU processes (gloo): the pool merges the gathered batch (16 completions, 8 per rank), so
    both ranks hold the same state."""
    script = Path(__file__).with_name("trl_two_ranks.py")
    env = dict(os.environ, PYTHONPATH=str(Path(saw_verl.__file__).parents[1]), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), model_dir,
               str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"history_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0] == ranks[1] and ranks[0]["world_size"] == 2
    history = ranks[0]["history"]
    assert history["steps"] == 2 and history["pool"][0] == [0.5 * 16 + 16] * 2  # W after 2 gathered batches of 16


CONDITIONS = {"sum_mod5": ["first_mod3", 1.0]}  # sum_mod5 counts where first_mod3 >= 1, else as 0
SCHEDULE = {0: [1.0, 0.5, 2.0], 4: [1.0, 2.5, 0.0]}  # alpha at step t: [1, 0.5 + t / 2, 2 - t / 2]


def assert_conditioned_and_scheduled(trainer, first_step: int, steps: int, estimator: str):
    """Training steps first_step.. of `trainer`: the rewards TRL aggregated are the hand-gated raw ones, its
    weights are the reference's on them times the schedule's alpha at the step, and the logs hold that alpha and
    the gated share."""
    cfg = SawConfig(("sum_mod5", "first_mod3", "constant"), mode=estimator.removeprefix("saw_"), reward_min=REWARD_MIN)
    recorded = [(step, raw) for step, raw in zip(trainer.recorded, trainer.raw_rewards) if step["train"]]
    assert len(recorded) == steps
    for t, (step, raw) in enumerate(recorded, start=first_step):
        gated = ~(raw[:, 1] >= 1.0) & ~torch.isnan(raw[:, 0])
        assert gated.any() and not gated.all()
        assert torch.equal(step["rewards"].nan_to_num(-9), raw.masked_fill(gated[:, None] & (torch.arange(3) == 0),
                                                                           0.0).nan_to_num(-9))
        alpha = [1.0, 0.5 + (t + 1) / 2, 2.0 - (t + 1) / 2]  # read at the logged step, t + 1
        weights, _, _, _ = reference_weights(step["rewards"], cfg)
        coefficients = [w * a for w, a in zip(weights, alpha)]
        torch.testing.assert_close(step["weights"].double(), torch.tensor(coefficients, dtype=torch.float64),
                                   rtol=1e-6, atol=1e-7)
        expected = trl_aggregation(step["rewards"], coefficients, trainer.args.multi_objective_aggregation)
        torch.testing.assert_close(step["advantages"].double(), expected, rtol=1e-5, atol=1e-5)
        (logged,) = [entry for entry in trainer.state.log_history if entry["step"] == t + 1 and "loss" in entry]
        assert [logged[f"saw/{name}/alpha"] for name in cfg.reward_keys] == pytest.approx(alpha, abs=1e-12)
        assert logged["saw/sum_mod5/gated_fraction"] == pytest.approx(gated.double().mean().item())
        assert "saw/first_mod3/gated_fraction" not in logged and "saw/constant/gated_fraction" not in logged


@pytest.mark.parametrize("estimator", ["saw_grpo", "saw_gdpo"])
def test_condition_and_schedule_over_two_steps_and_a_resume(model_dir, tmp_path, estimator):
    options = dict(trainer_class=RecordingShapedSAW, saw_estimator=estimator, saw_reward_min=REWARD_MIN,
                   reward_weights=None, saw_conditions=CONDITIONS, saw_weight_schedule=SCHEDULE,
                   save_strategy="steps", save_steps=2)
    first = run(model_dir, tmp_path, steps=2, **options)
    assert_conditioned_and_scheduled(first, 0, 2, estimator)
    resumed = run(model_dir, tmp_path, steps=3, resume_from_checkpoint=str(tmp_path / "checkpoint-2"), **options)
    assert_conditioned_and_scheduled(resumed, 2, 1, estimator)  # the schedule goes on at step 2, not 0
