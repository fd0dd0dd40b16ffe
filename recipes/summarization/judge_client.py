"""LLM judge behind any OpenAI-compatible chat endpoint (vLLM, SGLang, TGI, a hosted API), with httpx.

One request per (post, summary): the rubric (a file with {post} and {summary} placeholders) asks the
judge for a JSON object with one 0-10 score per key. Requests run concurrently up to
`max_concurrency`; each has a timeout; timeouts, connection errors, HTTP 429/5xx and malformed
replies are retried with exponential backoff; when the retries are spent, or on any other HTTP
error (wrong model name, bad key), `JudgeError` is raised. A judge failure never becomes a score.
"""

import asyncio
import json
import os
import re
from dataclasses import dataclass
from typing import Optional

import httpx

SCORE_KEYS = ("quality", "conciseness")
SCORE_RANGE = (0.0, 10.0)
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")


class JudgeError(RuntimeError):
    """The judge gave no usable answer: the message names the endpoint, the attempts and the last cause."""


class JudgeReplyError(ValueError):
    """One reply could not be read as scores (retried by the client)."""


@dataclass(frozen=True)
class JudgeSettings:
    """Where the judge is and how hard to try. `api_key_env` names an environment variable holding the key."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "judge"
    api_key_env: Optional[str] = None
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 1.0
    max_concurrency: int = 32
    temperature: float = 0.1
    max_tokens: int = 512

    def __post_init__(self):
        if not str(self.base_url).startswith(("http://", "https://")):
            raise ValueError(f"judge base_url must start with http:// or https://, got {self.base_url!r}")
        for name in ("timeout_s", "max_concurrency"):
            if not getattr(self, name) > 0:
                raise ValueError(f"judge {name} must be > 0, got {getattr(self, name)!r}")
        if self.max_retries < 0 or self.backoff_s < 0:
            raise ValueError(f"judge max_retries and backoff_s must be >= 0, got {self.max_retries}, {self.backoff_s}")


def parse_scores(reply: str, keys=SCORE_KEYS) -> dict:
    """{key: float} from the last flat JSON object in `reply` that has every key, each a number in [0, 10]."""
    for candidate in reversed(_JSON_OBJECT.findall(reply)):
        try:
            found = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if all(key in found for key in keys):
            break
    else:
        raise JudgeReplyError(f"no JSON object with keys {list(keys)} in the judge's reply: {reply[:200]!r}")
    scores = {}
    for key in keys:
        value = found[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not SCORE_RANGE[0] <= value <= SCORE_RANGE[1]
        ):
            raise JudgeReplyError(
                f"judge score {key}={value!r} is not a number in {list(SCORE_RANGE)}: {reply[:200]!r}"
            )
        scores[key] = float(value)
    return scores


def _reply_text(response: httpx.Response) -> str:
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise JudgeReplyError(f"not an OpenAI chat-completions body ({err!r}): {response.text[:200]!r}") from err
    if not isinstance(content, str):
        raise JudgeReplyError(f"reply content is {type(content).__name__}, not text: {response.text[:200]!r}")
    return content


class JudgeClient:
    """Scores summaries with one judge. Create it inside the event loop that will use it."""

    def __init__(self, settings: JudgeSettings, rubric: str, keys=SCORE_KEYS):
        missing = [p for p in ("{post}", "{summary}") if p not in rubric]
        if missing:
            raise ValueError(f"judge rubric lacks the placeholders {missing}")
        self.settings, self.rubric, self.keys = settings, rubric, tuple(keys)
        api_key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if settings.api_key_env and not api_key:
            raise ValueError(f"judge api_key_env={settings.api_key_env!r} is not set in the environment")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers=headers,
            timeout=settings.timeout_s,
            limits=httpx.Limits(max_connections=settings.max_concurrency),
        )
        self._slots = asyncio.Semaphore(settings.max_concurrency)

    def request_body(self, post: str, summary: str) -> dict:
        prompt = self.rubric.replace("{post}", post).replace("{summary}", summary)
        return {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }

    async def score(self, post: str, summary: str) -> dict:
        """{key: score in [0, 10]}; raises JudgeError when the judge cannot answer."""
        body = self.request_body(post, summary)
        attempts = self.settings.max_retries + 1
        last_cause = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            try:
                async with self._slots:
                    response = await self._http.post("/chat/completions", json=body)
            except httpx.TransportError as err:  # timeouts, refused or dropped connections
                last_cause = f"{type(err).__name__}: {err}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last_cause = f"HTTP {response.status_code}: {response.text[:200]!r}"
                continue
            if response.status_code != 200:
                raise JudgeError(
                    f"judge at {self.settings.base_url} refused the request (HTTP {response.status_code}, "
                    f"model {self.settings.model!r}): {response.text[:300]!r}"
                )
            try:
                return parse_scores(_reply_text(response), self.keys)
            except JudgeReplyError as err:
                last_cause = str(err)
        raise JudgeError(
            f"judge at {self.settings.base_url} (model {self.settings.model!r}) gave no usable answer in "
            f"{attempts} attempt(s); last: {last_cause}"
        )

    async def score_many(self, pairs) -> list:
        """Scores for [(post, summary), ...], concurrently; the first failure raises."""
        return list(await asyncio.gather(*(self.score(post, summary) for post, summary in pairs)))

    async def aclose(self):
        await self._http.aclose()
