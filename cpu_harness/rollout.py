"""The ``hf`` rollout: Hugging Face ``generate`` inside a Ray actor, weights synced from the actor.

verl 0.9.1 serves rollouts only through vLLM / SGLang / TRT-LLM servers. This module provides the
same three pieces for a plain HF model on CPU:

* :class:`HFServer`: the LLM-server actor the agent loop talks to (token in, token out). Each
  request is generated on its own, sampled from a seed of its own (:func:`request_seed`: the rollout
  seed, the weights' training step and the request id), so that a request's tokens depend neither on
  which requests arrive with it nor on when (batching them would make both decide the padding, the
  kernels' shapes and which random numbers each row draws). verl names a request by its place in
  the step's batch (``det-<priority>``) when ``rollout.full_determinism`` is set, as the launcher
  sets it; otherwise by a random uuid, and the samples are not repeatable. verl's v1 trainer numbers
  no request (every one is ``det-0``): requests of one step with the same id and prompt are told apart
  by their order of arrival (``det-0#1``, ``det-0#2``, ...), so each group's samples are repeatable as a
  set, unless two groups of the step share a prompt.
* :class:`HFReplica`: the ``RolloutReplica`` that launches one named ``HFServer`` per replica.
* :class:`HFServerAdapter`: the ``BaseRollout`` living in the FSDP actor worker; verl hands it the
  trained weights after every update and it loads them into the server.

Imported lazily (by verl's registries, through :mod:`cpu_harness.plugin`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from dataclasses import dataclass

import ray
import torch
from omegaconf import DictConfig
from transformers import AutoModelForCausalLM
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput


def server_actor_name(replica_rank: int) -> str:
    """Ray name of the ``HFServer`` of one replica (the adapter finds its server by this name)."""
    return f"saw_cpu_harness_hf_server_{replica_rank}"


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one request."""

    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    want_logprobs: bool
    max_new_tokens: int | None  # None: each request's budget from the rollout config

    @classmethod
    def from_request(cls, params: dict) -> Sampling:
        explicit_max = params.get("max_tokens", params.get("max_new_tokens"))
        return cls(
            temperature=float(params.get("temperature", 1.0)),
            top_p=float(params.get("top_p", 1.0)),
            top_k=int(params.get("top_k") or -1),
            repetition_penalty=float(params.get("repetition_penalty", 1.0)),
            want_logprobs=bool(params.get("logprobs", False)),
            max_new_tokens=None if explicit_max is None else int(explicit_max),
        )

    def generate_kwargs(self) -> dict:
        kwargs = {"repetition_penalty": self.repetition_penalty} if self.repetition_penalty != 1.0 else {}
        if self.temperature <= 0:
            return {**kwargs, "do_sample": False}
        return {**kwargs, "do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k if self.top_k > 0 else 0}


def request_seed(rollout_seed: int, global_steps, request_id) -> int:
    """The sampling seed of one request: a stable hash of the rollout seed, the step of the weights it
    is sampled from (``global_steps``, None before the first sync) and its id; in [0, 2**63)."""
    digest = hashlib.blake2b(f"{rollout_seed}|{global_steps}|{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class HFServer:
    """Async Ray actor holding an HF causal LM; implements the server calls verl makes."""

    def __init__(self, config, model_config, replica_rank: int):
        torch.set_num_threads(1)
        self.config = omega_conf_to_dataclass(config)
        if isinstance(model_config, DictConfig):  # replicas are handed the raw DictConfig
            model_config = omega_conf_to_dataclass(model_config)
        self.model = AutoModelForCausalLM.from_pretrained(model_config.local_path, dtype=torch.float32).eval()
        tokenizer = model_config.tokenizer
        eos = model_config.generation_config.eos_token_id if model_config.generation_config else None
        eos = tokenizer.eos_token_id if eos is None else eos
        self.eos_ids = {eos} if isinstance(eos, int) else set(eos)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.global_steps = None
        self._model_lock = asyncio.Lock()
        self._arrivals: Counter = Counter()  # (step, request id, prompt) -> requests seen: repeats of an id

    def _budget(self, prompt_len: int, sampling: Sampling) -> int:
        if sampling.max_new_tokens is not None:
            return max(1, sampling.max_new_tokens)
        room = self.config.prompt_length + self.config.response_length - prompt_len
        return max(1, min(self.config.response_length, room))

    async def generate(self, *, prompt_ids, sampling_params, request_id=None, **unused) -> TokenOutput:
        sampling = Sampling.from_request(sampling_params)
        prompt_ids = list(prompt_ids)
        async with self._model_lock:  # one request at a time, in order of arrival; no weight swap mid-request
            arrival = (self.global_steps, request_id, tuple(prompt_ids))
            repeat = self._arrivals[arrival]
            self._arrivals[arrival] += 1
            name = f"{request_id}#{repeat}" if repeat else request_id
            seed = request_seed(self.config.seed, self.global_steps, name)
            return await asyncio.to_thread(self._generate_one, prompt_ids, sampling, seed)

    @torch.no_grad()
    def _generate_one(self, prompt_ids: list[int], sampling: Sampling, seed: int) -> TokenOutput:
        """One prompt (no padding), sampled from the global torch RNG reseeded with ``seed`` (restored after)."""
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        budget = self._budget(len(prompt_ids), sampling)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.model.generate(
                input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=budget,
                eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id,
                return_dict_in_generate=True, output_logits=sampling.want_logprobs, **sampling.generate_kwargs(),
            )
        new_tokens = out.sequences[0, len(prompt_ids) :]
        logprobs = self._token_logprobs(out.logits, new_tokens[None], sampling)[0] if sampling.want_logprobs else None
        return self._finish(new_tokens, logprobs, budget)

    @staticmethod
    def _token_logprobs(step_logits, tokens: torch.Tensor, sampling: Sampling) -> torch.Tensor:
        """(B, T) log-probabilities of the sampled tokens, temperature-scaled like verl's actor."""
        logits = torch.stack(step_logits, dim=1).float()
        if sampling.temperature > 0:
            logits = logits / sampling.temperature
        return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    def _finish(self, tokens: torch.Tensor, logprobs: torch.Tensor | None, budget: int) -> TokenOutput:
        token_ids = tokens[:budget].tolist()
        stop_reason = "length"
        for position, token in enumerate(token_ids):
            if token in self.eos_ids:
                token_ids, stop_reason = token_ids[: position + 1], "completed"
                break
        kept = None if logprobs is None else logprobs[: len(token_ids)].tolist()
        return TokenOutput(token_ids=token_ids, log_probs=kept, stop_reason=stop_reason, num_preempted=0,
                           extra_fields={"global_steps": self.global_steps})

    async def load_weights(self, named_tensors: dict[str, torch.Tensor], global_steps=None) -> int:
        async with self._model_lock:
            missing, unexpected = self.model.load_state_dict(named_tensors, strict=False)
            if unexpected:
                raise ValueError(f"HFServer received weights the model does not have: {unexpected[:5]}")
            self.global_steps = global_steps
            self._arrivals.clear()  # the requests of earlier steps
        return len(named_tensors)

    # Lifecycle calls of RolloutReplica / CheckpointEngineManager: nothing to free on CPU.
    async def wake_up(self): return None
    async def sleep(self): return None
    async def clear_kv_cache(self): return None
    async def release_kv_cache(self): return None
    async def resume_kv_cache(self): return None
    async def resume_generation(self): return None
    async def start_profile(self, **kwargs): return None
    async def stop_profile(self): return None

    async def abort_all_requests(self, reject_request: bool = False):
        return {"aborted_count": 0, "request_ids": []}


class HFReplica(RolloutReplica):
    """One ``HFServer`` per replica, colocated with (and synced from) the FSDP actor worker."""

    async def launch_servers(self):
        server = (ray.remote(HFServer)
                  .options(name=server_actor_name(self.replica_rank), num_cpus=0, max_concurrency=self.max_concurrency)
                  .remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank))
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"hf-cpu-{self.replica_rank}"

    def rollout_worker_use_gpu(self) -> bool:
        return False


class HFServerAdapter(BaseRollout):
    """Lives in the FSDP ``ActorRolloutRefWorker``; pushes trained weights to its ``HFServer``."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1, *args, **kwargs):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        world = self.config.tensor_model_parallel_size * self.config.data_parallel_size
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self.is_leader = rank % world == 0
        self.sleep_level = 1
        self._server = None

    async def resume(self, tags: list[str]): return None
    async def release(self): return None

    async def update_weights(self, weights, wire_format: str = "named_tensors", **kwargs):
        if wire_format != "named_tensors":
            raise NotImplementedError(f"the hf rollout syncs full named tensors only, got wire_format={wire_format!r}")
        from verl.workers.rollout.utils import ensure_async_iterator

        state = {}
        async for name, tensor in ensure_async_iterator(weights):
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor  # DTensor -> every rank
            if self.is_leader:
                state[name] = full.detach().to("cpu", dtype=torch.float32).clone()
        if self.is_leader:
            self._server = self._server or ray.get_actor(server_actor_name(self.replica_rank))
            await self._server.load_weights.remote(state, global_steps=kwargs.get("global_steps"))
