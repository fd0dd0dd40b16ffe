"""SAWGRPOConfig: estimator <-> aggregation resolution, refused options, TrlParser from YAML and CLI."""

import pytest

pytest.importorskip("trl")

from trl import TrlParser  # noqa: E402

from saw_verl.errors import SawInputError  # noqa: E402
from saw_verl.integrations.trl import SAWGRPOConfig  # noqa: E402


def config(tmp_path, **options) -> SAWGRPOConfig:
    return SAWGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **options)


@pytest.mark.parametrize(
    "options, estimator, aggregation",
    [
        ({}, "saw_grpo", "sum_then_normalize"),
        ({"saw_estimator": "saw_gdpo"}, "saw_gdpo", "normalize_then_sum"),
        ({"multi_objective_aggregation": "normalize_then_sum"}, "saw_gdpo", "normalize_then_sum"),
        ({"saw_estimator": "saw_grpo", "multi_objective_aggregation": "sum_then_normalize"}, "saw_grpo",
         "sum_then_normalize"),
        ({"saw_estimator": "saw_grpo", "scale_rewards": False}, "saw_grpo", "sum_then_normalize"),
    ],
)
def test_estimator_and_aggregation_resolve(tmp_path, options, estimator, aggregation):
    args = config(tmp_path, **options)
    assert (args.saw_estimator, args.multi_objective_aggregation) == (estimator, aggregation)
    assert args.saw_mode == estimator.removeprefix("saw_")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"saw_estimator": "saw_ppo"}, "unknown saw_estimator 'saw_ppo'"),
        ({"multi_objective_aggregation": "sum"}, "unknown multi_objective_aggregation 'sum'"),
        ({"saw_estimator": "saw_gdpo", "multi_objective_aggregation": "sum_then_normalize"},
         "saw_estimator='saw_gdpo' runs on multi_objective_aggregation='normalize_then_sum'"),
        ({"saw_estimator": "saw_grpo", "scale_rewards": "batch"}, "saw_grpo needs scale_rewards in"),
        ({"saw_estimator": "saw_gdpo", "scale_rewards": "none"}, r"scale_rewards='none' would be ignored"),
        ({"multi_objective_aggregation": "normalize_then_sum", "scale_rewards": "batch"},
         r"saw_gdpo runs on TRL's normalize_then_sum, .* scale_rewards='batch' would be ignored"),
    ],
)
def test_contradictions_raise(tmp_path, options, message):
    with pytest.raises(SawInputError, match=message):
        config(tmp_path, **options)


def test_trl_parser_reads_yaml_then_cli(tmp_path):
    yaml_path = tmp_path / "saw.yaml"
    yaml_path.write_text(
        f"output_dir: {tmp_path}\nuse_cpu: true\nreport_to: none\nsaw_estimator: saw_gdpo\n"
        "saw_reward_min: [-3.0, 0.0]\nsaw_preset: official\nreward_weights: [1.0, 0.5]\n"
    )
    parser = TrlParser((SAWGRPOConfig,))
    (from_yaml,) = parser.parse_args_and_config(args=["--config", str(yaml_path)])
    assert from_yaml.saw_estimator == "saw_gdpo" and from_yaml.multi_objective_aggregation == "normalize_then_sum"
    assert from_yaml.saw_reward_min == [-3.0, 0.0] and from_yaml.saw_preset == "official"
    assert from_yaml.saw_dynamic is True and from_yaml.reward_weights == [1.0, 0.5]

    cli = ["--config", str(yaml_path), "--saw_dynamic", "false", "--saw_delta", "1e-6", "--saw_reward_min", "-1", "2"]
    (overridden,) = parser.parse_args_and_config(args=cli)
    assert overridden.saw_dynamic is False and overridden.saw_delta == 1e-6
    assert overridden.saw_reward_min == [-1.0, 2.0] and overridden.saw_estimator == "saw_gdpo"


def test_trl_parser_cli_alone_and_bad_choice(tmp_path):
    parser = TrlParser((SAWGRPOConfig,))
    base = ["--output_dir", str(tmp_path), "--use_cpu", "true", "--report_to", "none"]
    (args,) = parser.parse_args_and_config(args=base + ["--multi_objective_aggregation", "normalize_then_sum"])
    assert args.saw_estimator == "saw_gdpo"
    with pytest.raises(SystemExit):  # argparse choices
        parser.parse_args_and_config(args=base + ["--saw_estimator", "gdpo"])
    with pytest.raises(SawInputError, match="saw_estimator='saw_grpo' runs on"):
        parser.parse_args_and_config(
            args=base + ["--saw_estimator", "saw_grpo", "--multi_objective_aggregation", "normalize_then_sum"]
        )


def test_conditions_and_schedule_from_yaml_and_cli_json(tmp_path):
    yaml_path = tmp_path / "saw.yaml"
    yaml_path.write_text(f"output_dir: {tmp_path}\nuse_cpu: true\nreport_to: none\n"
                         "saw_conditions: {format: [correct, 1.0, -1.0]}\n"
                         "saw_weight_schedule: {0: [1, 0], 100: [1, 1]}\n")
    parser = TrlParser((SAWGRPOConfig,))
    (from_yaml,) = parser.parse_args_and_config(args=["--config", str(yaml_path)])
    assert from_yaml.saw_conditions == {"format": ["correct", 1.0, -1.0]}
    assert from_yaml.saw_weight_schedule == [[0, [1, 0]], [100, [1, 1]]] and from_yaml.reward_weights is None
    cli = ["--config", str(yaml_path), "--saw_conditions", '{"len": ["format", 0.5]}',
           "--saw_weight_schedule", '{"0": [1, 0.5], "10": [2, 1]}']
    (from_cli,) = parser.parse_args_and_config(args=cli)
    assert from_cli.saw_conditions == {"len": ["format", 0.5]}
    assert from_cli.saw_weight_schedule == [[0, [1, 0.5]], [10, [2, 1]]]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"saw_weight_schedule": {0: [1, 0]}, "reward_weights": [1, 1]},
         "give reward_weights or saw_weight_schedule, not both"),
        ({"saw_weight_schedule": '{"0": [1, 0], "0": [2, 1]'}, "saw_weight_schedule is not valid JSON"),
        ({"saw_weight_schedule": {10: [1, 0], 5: [1, 1]}}, r"saw_weight_schedule: steps must increase; step 5"),
        ({"saw_weight_schedule": {"-1": [1, 0]}}, r"saw_weight_schedule: step '-1' is not an integer >= 0"),
        ({"saw_weight_schedule": {0: [1, 0], 5: [1]}}, r"saw_weight_schedule: the weights at step 5 must be one per"),
        ({"saw_conditions": {"format": ["format", 1.0]}},
         r"saw_conditions\['format'\]: a key cannot be gated on itself"),
        ({"saw_conditions": {"a": ["b", 1.0], "b": ["a", 1.0]}},
         r"saw_conditions: the conditions loop \(a -> b -> a\)"),
        ({"saw_conditions": {"a": ["b", "inf"]}}, r"saw_conditions\['a'\] threshold must be a finite number"),
        ({"saw_conditions": '["a", "b", 1]'}, "saw_conditions must map a reward function to"),
    ],
)
def test_bad_conditions_and_schedules_raise(tmp_path, options, message):
    with pytest.raises(SawInputError, match=message):
        config(tmp_path, **options)
