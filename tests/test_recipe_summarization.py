"""recipes/summarization: the judge client against a real loopback HTTP server, the offline reward, data preparation."""

import asyncio
import itertools
import json
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "summarization"
sys.path.insert(0, str(RECIPE))

import offline_reward  # noqa: E402
import prepare_tldr  # noqa: E402
from judge_client import JudgeClient, JudgeError, JudgeSettings, parse_scores  # noqa: E402
from verl.utils.import_utils import load_extern_object  # noqa: E402

# Loaded exactly as verl's reward loop loads it (by file path).
compute_score = load_extern_object(str(RECIPE / "tldr_reward.py"), "compute_score")
RUBRIC = (RECIPE / "rubric.md").read_text()
POST = "SUBREDDIT: r/cooking\nTITLE: Burnt rice\nPOST: Every time I cook rice it burns at the bottom.\nTL;DR:"


def completion(content):
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


class JudgeServer:
    """A chat-completions endpoint on 127.0.0.1 whose answers a test scripts: `replies` is consumed in
    order (then `default`); each reply is (status, body) or ("sleep", seconds) before the default."""

    def __init__(self):
        self.replies, self.default, self.requests = [], (200, completion('{"quality": 7, "conciseness": 9}')), []
        self.in_flight = self.max_in_flight = 0
        self.barrier = None  # a threading.Barrier: each request waits there for the others in flight
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    reply = server.replies.pop(0) if server.replies else server.default
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.barrier is not None:
                        server.barrier.wait()
                    if reply[0] == "sleep":
                        time.sleep(reply[1])
                        reply = server.default
                    status, payload = reply
                    data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_port}/v1"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server():
    judge = JudgeServer()
    yield judge
    judge.close()


def fast_settings(url, **overrides):
    return JudgeSettings(
        **{"base_url": url, "model": "tiny-judge", "timeout_s": 2.0, "max_retries": 2, "backoff_s": 0.01, **overrides}
    )


def judge_once(settings, post=POST, summary="Rice burns."):
    async def run():
        client = JudgeClient(settings, RUBRIC)
        try:
            return await client.score(post, summary)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_judge_good_answer_and_request(server, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sekret")
    server.default = (200, completion('The summary is faithful.\n{"quality": 7, "conciseness": 9}'))
    assert judge_once(fast_settings(server.url, api_key_env="TEST_JUDGE_KEY")) == {"quality": 7.0, "conciseness": 9.0}
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sekret"
    body = request["body"]
    assert (body["model"], body["temperature"]) == ("tiny-judge", 0.1)
    assert POST in body["messages"][0]["content"] and "Rice burns." in body["messages"][0]["content"]


def test_judge_runs_requests_concurrently_up_to_the_limit(server):
    server.barrier = threading.Barrier(3, timeout=10)  # breaks (and the test fails) unless 3 requests are in flight

    async def run():
        client = JudgeClient(fast_settings(server.url, max_concurrency=3), RUBRIC)
        try:
            return await client.score_many([(POST, f"summary {i}") for i in range(9)])
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [{"quality": 7.0, "conciseness": 9.0}] * 9
    assert len(server.requests) == 9 and server.max_in_flight == 3


def test_judge_retries_5xx_then_succeeds(server):
    server.replies = [(503, "overloaded"), (500, "oops")]
    assert judge_once(fast_settings(server.url)) == {"quality": 7.0, "conciseness": 9.0}
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "reply,cause",
    [
        ((500, "internal error"), "HTTP 500"),
        ((429, "slow down"), "HTTP 429"),
        ((200, "<html>not json</html>"), "not an OpenAI chat-completions body"),
        ((200, {"choices": []}), "not an OpenAI chat-completions body"),
        ((200, completion("Looks fine to me, 8/10.")), "no JSON object"),
        ((200, completion('{"quality": 7}')), "no JSON object"),
        ((200, completion('{"quality": 11, "conciseness": 9}')), "quality=11"),
        ((200, completion('{"quality": "high", "conciseness": 9}')), "quality='high'"),
    ],
    ids=[
        "always_500",
        "always_429",
        "html_body",
        "no_choices",
        "no_scores",
        "missing_key",
        "out_of_range",
        "not_a_number",
    ],
)
def test_judge_fails_loudly_after_retries(server, reply, cause):
    server.default = reply
    with pytest.raises(JudgeError, match=f"3 attempt\\(s\\); last: .*{cause}"):
        judge_once(fast_settings(server.url))
    assert len(server.requests) == 3


def test_judge_times_out_and_fails_loudly(server):
    server.default = ("sleep", 1.0)
    with pytest.raises(JudgeError, match="2 attempt\\(s\\); last: ReadTimeout"):
        judge_once(fast_settings(server.url, timeout_s=0.2, max_retries=1))
    assert len(server.requests) == 2


def test_judge_timeout_then_recovery(server):
    server.replies = [("sleep", 1.0)]
    assert judge_once(fast_settings(server.url, timeout_s=0.3)) == {"quality": 7.0, "conciseness": 9.0}
    assert len(server.requests) == 2


def test_judge_client_errors_are_not_retried(server):
    server.default = (404, '{"error": "model tiny-judge does not exist"}')
    with pytest.raises(JudgeError, match="HTTP 404.*does not exist"):
        judge_once(fast_settings(server.url))
    assert len(server.requests) == 1


def test_judge_unreachable_fails_loudly():
    closed = JudgeServer()
    closed.close()  # the port is now closed: connections are refused
    with pytest.raises(JudgeError, match="ConnectError"):
        judge_once(fast_settings(closed.url, max_retries=1))


def test_judge_settings_and_rubric_are_checked():
    with pytest.raises(ValueError, match="base_url"):
        JudgeSettings(base_url="127.0.0.1:8000")
    with pytest.raises(ValueError, match="timeout_s"):
        JudgeSettings(timeout_s=0)
    with pytest.raises(ValueError, match="placeholders"):
        JudgeClient(JudgeSettings(), "Rate this: {summary}")
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR"):
        JudgeClient(JudgeSettings(api_key_env="NO_SUCH_KEY_VAR"), RUBRIC)
    assert parse_scores('draft {"quality": 1, "conciseness": 2} final {"quality": 6, "conciseness": 10}') == {
        "quality": 6.0,
        "conciseness": 10.0,
    }


def test_reward_function_with_judge_backend(server):
    server.default = (200, completion('{"quality": 6, "conciseness": 8}'))
    kwargs = {"backend": "judge", "judge": {"base_url": server.url, "model": "tiny-judge", "timeout_s": 2.0}}
    extra = [{"post": f"{POST} {i}"} for i in range(4)]

    async def batch():  # as verl's reward loop does: one task per sample in one event loop
        return await asyncio.gather(*(compute_score("reddit_tldr", " Rice burns. ", "ref", e, **kwargs) for e in extra))

    results = asyncio.run(batch())
    assert results == [{"score": 14.0, "quality": 6.0, "conciseness": 8.0}] * 4
    prompts = [request["body"]["messages"][0]["content"] for request in server.requests]
    assert [sum(e["post"] in prompt for prompt in prompts) for e in extra] == [1] * 4  # one judge call per sample
    server.default = (503, "down")
    with pytest.raises(JudgeError):
        asyncio.run(
            compute_score(
                "reddit_tldr", "x", "ref", extra[0], backend="judge", judge={**kwargs["judge"], "max_retries": 0}
            )
        )
    with pytest.raises(KeyError, match="prepare_tldr.py"):
        asyncio.run(compute_score("reddit_tldr", "x", "ref", {}, **kwargs))
    with pytest.raises(ValueError, match="unknown TL;DR reward backend"):
        asyncio.run(compute_score("reddit_tldr", "x", "ref", extra[0], backend="rouge"))


# ----- offline reward -----


def brute_force_lcs(a, b):
    for size in range(min(len(a), len(b)), 0, -1):
        subsequences = set(itertools.combinations(b, size))
        if any(c in subsequences for c in itertools.combinations(a, size)):
            return size
    return 0


@pytest.mark.parametrize("seed", range(30))
def test_lcs_matches_brute_force(seed):
    rng = random.Random(seed)
    a = [rng.choice("abc") for _ in range(rng.randint(0, 7))]
    b = [rng.choice("abc") for _ in range(rng.randint(0, 7))]
    assert offline_reward.lcs_length(a, b) == brute_force_lcs(a, b)


def test_offline_scores_hand_cases():
    reference = "The cat is on the mat."
    assert offline_reward.rouge_l_f1(reference, reference) == 1.0
    assert offline_reward.rouge_l_f1("the cat sat on the mat", reference) == pytest.approx(5 / 6)  # LCS 5 of 6 and 6
    assert offline_reward.rouge_l_f1("dogs bark", reference) == 0.0
    assert offline_reward.rouge_l_f1("", reference) == 0.0
    assert offline_reward.conciseness_score("cat on mat", reference) == 10.0
    assert offline_reward.conciseness_score(" ".join(["word"] * 12), reference) == pytest.approx(
        5.0
    )  # 2x the reference
    assert offline_reward.conciseness_score(" ".join(["word"] * 18), reference) == 0.0  # 3x
    assert offline_reward.conciseness_score("  ", reference) == 0.0
    result = asyncio.run(compute_score("reddit_tldr", "the cat sat on the mat", reference, {}, backend="offline"))
    assert result == {
        "score": pytest.approx(10 * 5 / 6 + 10.0),
        "quality": pytest.approx(10 * 5 / 6),
        "conciseness": 10.0,
    }


# ----- data preparation -----


def tldr_rows(count, label="Rice burns, help."):
    return [
        {"prompt": f"SUBREDDIT: r/x\nTITLE: t{i}\nPOST: post number {i}\nTL;DR:", "label": f" {label} {i}", "id": i}
        for i in range(count)
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_prepare_tldr_converts_each_file_type(tmp_path, suffix):
    rows = tldr_rows(12)
    path = tmp_path / f"tldr{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        pd.DataFrame(rows).to_parquet(path)
    out = tmp_path / "out"
    args = [
        "--train-file",
        str(path),
        "--eval-file",
        str(path),
        "--out-dir",
        str(out),
        "--train-size",
        "8",
        "--eval-size",
        "4",
    ]
    assert prepare_tldr.main(args) == 0
    train, test = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "test.parquet")
    assert (len(train), len(test)) == (8, 4)
    row = train.iloc[0]
    (message,) = row["prompt"]
    post = row["extra_info"]["post"]
    assert message["role"] == "user" and message["content"].endswith(post) and post.endswith("TL;DR:")
    number = post.split("post number ")[1].split("\n")[0]
    assert row["reward_model"]["ground_truth"] == f"Rice burns, help. {number}"
    assert len(set(train["extra_info"].map(lambda e: e["post"]))) == 8  # drawn without replacement


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("pairs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}], r"missing \['label'\]"),
        ("empty_label.jsonl", tldr_rows(3)[:2] + [{"prompt": "p", "label": "  "}], "row 2 column 'label'"),
        ("toolrl.json", {"instruction": "i", "input": "x", "output": "o"}, "not a list"),
        ("broken.jsonl", "{not json", "could not read it"),
        ("fake.parquet", "not a parquet file", "could not read it"),
        ("tldr.csv", "prompt,label\n", "unknown file extension"),
        ("small.jsonl", tldr_rows(3), "fewer than the 8 requested"),
    ],
    ids=["comparison_file", "empty_label", "toolrl_file", "bad_json", "bad_parquet", "csv", "too_few_rows"],
)
def test_prepare_tldr_rejects_wrong_files(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif name.endswith(".jsonl"):
        path.write_text("\n".join(json.dumps(r) for r in content))
    else:
        path.write_text(json.dumps(content))
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in tldr_rows(10)))
    args = [
        "--train-file",
        str(path),
        "--eval-file",
        str(good),
        "--out-dir",
        str(tmp_path / "out"),
        "--train-size",
        "8",
        "--eval-size",
        "2",
    ]
    assert prepare_tldr.main(args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and name in err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()
