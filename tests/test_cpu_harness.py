"""Unit tests of cpu_harness without Ray: assets, launcher, platform patches, the hf server."""

from __future__ import annotations

import asyncio
import sys
import types

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from saw_verl.integrations import import_hooks
from cpu_harness import launcher, platform
from cpu_harness.assets import (
    PLAIN_TEMPLATE,
    TinyQwen2,
    build_tiny_model,
    byte_level_tokenizer,
    rl_row,
    write_rl_parquet,
)
from cpu_harness.compat import HarnessCompatError
from cpu_harness.smoke_task import REWARD_KEYS, compute_score


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


# ---------------------------------------------------------------------------------------- assets


@pytest.mark.parametrize("text", ["3+4=7", "  spaces\tand\nlines ", "héllo → 世界", ""], ids=["ascii", "whitespace",
                                                                                         "non-ascii", "empty"])
def test_byte_tokenizer_round_trips_any_text(text):
    tokenizer = byte_level_tokenizer()
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text.encode())  # one token per byte
    assert tokenizer.decode(ids) == text


def test_byte_tokenizer_specials_and_templates():
    tokenizer = byte_level_tokenizer()
    assert len(tokenizer) == 259
    assert tokenizer.convert_ids_to_tokens([tokenizer.pad_token_id, tokenizer.eos_token_id]) == [
        "<|endoftext|>", "<|im_end|>"]
    messages = [{"role": "user", "content": "copy 7"}]
    chatml = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert chatml == "<|im_start|>user\ncopy 7<|im_end|>\n<|im_start|>assistant\n"
    plain = byte_level_tokenizer(PLAIN_TEMPLATE).apply_chat_template(messages, add_generation_prompt=True,
                                                                     tokenize=False)
    assert plain == "copy 7"


def test_tiny_model_loads_untied_with_expected_size(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert sum(p.numel() for p in model.parameters()) == 107_456
    assert model.config.tie_word_embeddings is False
    assert model.get_input_embeddings().weight.data_ptr() != model.get_output_embeddings().weight.data_ptr()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model.config.eos_token_id == tokenizer.eos_token_id == model.generation_config.eos_token_id


def test_tiny_model_seed_decides_the_weights(tmp_path, tiny_model_dir):
    same = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "same", TinyQwen2(seed=0)))
    other = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "other", TinyQwen2(seed=1)))
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(same.state_dict()[weight], reference.state_dict()[weight])
    assert not torch.equal(other.state_dict()[weight], reference.state_dict()[weight])


def test_rl_parquet_round_trips(tmp_path):
    rows = [rl_row("src", "1+1=", "2", "train", 0), rl_row("src", "2+2=", "4", "train", 1, note="x")]
    frame = pd.read_parquet(write_rl_parquet(rows, tmp_path / "d" / "train.parquet"))
    assert list(frame["prompt"].iloc[1]) == [{"role": "user", "content": "2+2="}]
    assert frame["reward_model"].iloc[0] == {"style": "rule", "ground_truth": "2"}
    assert frame["extra_info"].iloc[1] == {"split": "train", "index": 1, "note": "x"}


def test_rl_parquet_refuses_rows_verl_cannot_read(tmp_path):
    row = rl_row("src", "1+1=", "2", "train", 0)
    del row["reward_model"]
    with pytest.raises(ValueError, match=r"row 1 .* lacks verl column\(s\) \['reward_model'\]"):
        write_rl_parquet([rl_row("src", "p", "g", "train", 0), row], tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="no rows"):
        write_rl_parquet([], tmp_path / "x.parquet")


@pytest.mark.parametrize("answer,expected", [("7", (1.0, 1.0)), ("x7", (0.0, 0.5)), ("", (0.0, 0.0))],
                         ids=["right", "digit-in-text", "empty"])
def test_smoke_reward_returns_every_key(answer, expected):
    scores = compute_score("src", answer, "7")
    assert set(scores) == {"score", *REWARD_KEYS}
    assert (scores["accuracy_reward"], scores["format_reward"]) == expected


# -------------------------------------------------------------------------------------- launcher


def test_merge_overrides_later_key_wins_whatever_its_prefix():
    merged = launcher.merge_overrides(["a.b=1", "+c=2", "d=3"], ["c=5", "++a.b=4"])
    assert merged == ["d=3", "c=5", "++a.b=4"]
    with pytest.raises(ValueError, match="not a hydra override"):
        launcher.merge_overrides(["trainer.use_v1"])


def test_every_cpu_demo_method_gives_a_main_ppo_command(tmp_path):
    """The rivals' runs drop the recipe's SAW block (a hydra deletion, no value) and set their own options."""
    from recipes.cpu_demo.experiment import METHODS, run_overrides

    for method in METHODS:
        argv = launcher.main_ppo_command(run_overrides(tmp_path, method, 0, 2))
        assert f"algorithm.adv_estimator={METHODS[method].estimator}" in argv
    argv = launcher.main_ppo_command(run_overrides(tmp_path, "gd2po_snr", 0, 2))
    assert argv.index("~algorithm.saw") < argv.index("+algorithm.saw.tau=0.8")


def test_main_ppo_command_puts_cpu_overrides_first(tmp_path):
    argv = launcher.main_ppo_command(["trainer.total_training_steps=2", "reward.num_workers=2"],
                                     config_path=tmp_path, config_name="demo")
    assert argv[1:3] == ["-m", "verl.trainer.main_ppo"]
    assert argv[3:5] == [f"--config-path={tmp_path}", "--config-name=demo"]
    assert "actor_rollout_ref.rollout.name=hf" in argv
    assert argv[-2:] == ["trainer.total_training_steps=2", "reward.num_workers=2"]
    assert "reward.num_workers=1" not in argv


def test_harness_env_adds_the_plugin_once():
    env = launcher.harness_env({"VERL_USE_EXTERNAL_MODULES": "other.plugin", "PATH": "/bin"})
    assert env["VERL_USE_EXTERNAL_MODULES"] == f"other.plugin,{launcher.PLUGIN_MODULE}"
    assert launcher.harness_env(env)["VERL_USE_EXTERNAL_MODULES"] == env["VERL_USE_EXTERNAL_MODULES"]
    assert env["VERL_PLATFORM"] == "cpu" and env["PATH"] == "/bin"


def test_command_line_execs_main_ppo_with_the_harness(monkeypatch):
    seen = {}
    monkeypatch.setattr(launcher.os, "execve", lambda path, argv, env: seen.update(path=path, argv=argv, env=env))
    launcher._cli(["--config-path=recipes/x/config", "--config-name=x", "trainer.total_training_steps=3"])
    assert seen["path"] == sys.executable
    assert seen["argv"][3].startswith("--config-path=/") and seen["argv"][3].endswith("recipes/x/config")
    assert seen["argv"][4] == "--config-name=x" and seen["argv"][-1] == "trainer.total_training_steps=3"
    assert seen["env"]["VERL_PLATFORM"] == "cpu"


def test_run_main_ppo_kills_a_run_past_its_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher, "main_ppo_command", lambda *a, **k: [sys.executable, "-c", "import time; time.sleep(60)"])
    result = launcher.run_main_ppo([], tmp_path / "log.txt", timeout_s=1)
    assert result.returncode != 0
    assert "killed after 1 s timeout" in result.log


# -------------------------------------------------------------------------------------- platform


def test_cpu_platform_registers_with_verl():
    from verl.plugin.platform.platform_manager import PlatformRegistry

    platform.register_platform()
    platform.register_platform()  # idempotent
    cpu = PlatformRegistry.get("cpu")()
    assert (cpu.device_name, cpu.communication_backend_name(), cpu.ray_resource_name()) == ("cpu", "gloo", "GPU")
    assert cpu.device_module.mem_get_info()[0] > 0


def test_cpu_device_module_rng_state_round_trips():
    device = platform.CPU_DEVICE_MODULE
    state = device.get_rng_state()
    first = torch.rand(3)
    device.set_rng_state(state)
    assert torch.equal(torch.rand(3), first)
    assert device.memory_allocated() == 0 and device.empty_cache() is None


def test_gloo_default_patch_and_its_feature_detection():
    calls = []
    fake = types.SimpleNamespace(initialize_global_process_group_ray=lambda timeout_second=None, backend=None:
                                 calls.append(backend))
    platform._default_backend_to_gloo(fake)
    platform._default_backend_to_gloo(fake)  # idempotent: wraps once
    fake.initialize_global_process_group_ray()
    fake.initialize_global_process_group_ray(backend="cpu:gloo")
    assert calls == ["gloo", "cpu:gloo"]
    with pytest.raises(HarnessCompatError, match=r"initialize_global_process_group_ray.*no longer accepts \['timeout_second', 'backend'\]"):
        platform._default_backend_to_gloo(types.SimpleNamespace(initialize_global_process_group_ray=lambda t=None: 0))
    with pytest.raises(HarnessCompatError, match=r"`fake_dist.initialize_global_process_group_ray` is missing"):
        platform._default_backend_to_gloo(types.ModuleType("fake_dist"))


def test_cpu_offload_policy_is_built_unpinned():
    built = []
    fake = types.SimpleNamespace(CPUOffloadPolicy=lambda pin_memory=True: built.append(pin_memory))
    platform._unpinned_cpu_offload(fake)
    fake.CPUOffloadPolicy(pin_memory=True)
    assert built == [False]


def test_after_import_patches_on_first_import(tmp_path, monkeypatch):
    (tmp_path / "harness_probe_mod.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    import_hooks.after_import("harness_probe_mod", lambda module: seen.append(module.VALUE))
    assert seen == []
    import harness_probe_mod  # noqa: F401

    assert seen == [1]
    import_hooks.after_import("harness_probe_mod", lambda module: seen.append(module.VALUE + 1))  # already imported
    assert seen == [1, 2]
    monkeypatch.delitem(sys.modules, "harness_probe_mod")


# ------------------------------------------------------------------------------------- hf server


@pytest.fixture
def hf_server(tiny_model_dir):
    """A new server each test: its lock belongs to the first event loop that waits on it."""
    from hydra import compose, initialize_config_module

    from cpu_harness.rollout import HFServer

    overrides = [f"actor_rollout_ref.model.path={tiny_model_dir}", "actor_rollout_ref.rollout.name=hf",
                 "actor_rollout_ref.rollout.prompt_length=16", "actor_rollout_ref.rollout.response_length=5"]
    with initialize_config_module("verl.trainer.config", version_base=None):
        config = compose("ppo_trainer", overrides=overrides)
    return HFServer(config.actor_rollout_ref.rollout, config.actor_rollout_ref.model, replica_rank=0)


def test_generation_log_probs_match_a_forward_pass(hf_server):
    """Prompts of different lengths arriving together: every returned log-prob must equal the one a forward
    pass of prompt + response gives."""
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15]]
    params = {"temperature": 0.7, "top_p": 1.0, "top_k": -1, "logprobs": True}

    async def generate_all():
        return await asyncio.gather(*[hf_server.generate(prompt_ids=p, sampling_params=params) for p in prompts])

    outputs = asyncio.run(generate_all())
    for prompt, output in zip(prompts, outputs):
        assert 1 <= len(output.token_ids) <= 5 and len(output.log_probs) == len(output.token_ids)
        ids = torch.tensor([prompt + output.token_ids])
        with torch.no_grad():
            logits = hf_server.model(ids).logits[0, len(prompt) - 1 : -1] / 0.7
        expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(output.token_ids)[:, None]).squeeze(-1)
        torch.testing.assert_close(torch.tensor(output.log_probs), expected, atol=1e-4, rtol=0)


def test_a_request_samples_the_same_tokens_whatever_arrives_with_it(hf_server):
    """A request's tokens follow from (rollout seed, step of the weights, request id) alone: not from the
    requests that arrive with it, nor their order; the process's torch RNG is left as it was."""
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "max_tokens": 5}
    requests = [([5, 6, 7], "det-0"), ([8, 9, 10, 11], "det-1"), ([5, 6, 7], "det-2")]

    async def generate(batch, step=None):  # as in a step of verl: the weights of `step` loaded, then the requests
        await hf_server.load_weights({}, global_steps=step)
        outputs = await asyncio.gather(*[hf_server.generate(prompt_ids=prompt, sampling_params=params, request_id=rid)
                                         for prompt, rid in batch])
        return {rid: output.token_ids for (_, rid), output in zip(batch, outputs)}

    async def scenario():  # one event loop: the server's lock belongs to it
        together = await generate(requests)
        reordered, alone = await generate(requests[::-1]), await generate(requests[:1])
        return together, reordered, alone, await generate(requests[:1], step=7)

    rng = torch.get_rng_state()
    together, reordered, alone, other_step = asyncio.run(scenario())
    assert reordered == together and alone == {"det-0": together["det-0"]}
    assert torch.equal(torch.get_rng_state(), rng)
    assert together["det-0"] != together["det-2"]  # the same prompt, another place in the batch
    assert other_step != alone  # the weights of another step


def test_requests_with_one_id_are_numbered_by_arrival(hf_server):
    """verl's v1 trainer sends every request as det-0: repeats of an id and prompt sample from seeds of their
    own, so a group's samples differ from each other and are the same set in any order of arrival."""
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "max_tokens": 5}
    prompts = [[5, 6, 7]] * 4 + [[8, 9, 10, 11]] * 4

    async def generate(batch):
        outputs = await asyncio.gather(*[hf_server.generate(prompt_ids=prompt, sampling_params=params,
                                                            request_id="det-0") for prompt in batch])
        return sorted((tuple(prompt), tuple(output.token_ids)) for prompt, output in zip(batch, outputs))

    async def scenario():
        first = await generate(prompts)
        await hf_server.load_weights({}, global_steps=hf_server.global_steps)  # a new step: numbering restarts
        return first, await generate(prompts[::-1])

    first, reordered = asyncio.run(scenario())
    assert first == reordered
    assert len(set(first)) == len(prompts)  # no two samples alike


def test_generation_stops_at_eos_and_respects_the_budget(hf_server):
    eos = next(iter(hf_server.eos_ids))
    stopped = hf_server._finish(torch.tensor([4, eos, 9, 9, 9]), torch.zeros(5), budget=5)
    assert (stopped.token_ids, stopped.stop_reason, len(stopped.log_probs)) == ([4, eos], "completed", 2)
    cut = hf_server._finish(torch.tensor([4, 5, 6, 7, 8]), None, budget=3)
    assert (cut.token_ids, cut.stop_reason, cut.log_probs) == ([4, 5, 6], "length", None)
    assert hf_server._budget(prompt_len=14, sampling=_sampling()) == 5
    assert hf_server._budget(prompt_len=14, sampling=_sampling(max_tokens=2)) == 2


def _sampling(**params):
    from cpu_harness.rollout import Sampling

    return Sampling.from_request(params)


def test_sampling_params_map_to_hf_generate():
    assert _sampling(temperature=0).generate_kwargs() == {"do_sample": False}
    assert _sampling(temperature=0.5, top_k=-1, top_p=0.9).generate_kwargs() == {
        "do_sample": True, "temperature": 0.5, "top_p": 0.9, "top_k": 0}
    assert _sampling(top_k=None).top_k == -1
    assert _sampling(temperature=0, repetition_penalty=1.2).generate_kwargs() == {
        "repetition_penalty": 1.2, "do_sample": False}
