"""The judge client against a local chat-completions server: malformed replies, timeouts, 429, cache."""

import base64
import json

import numpy as np
import pytest

from vidalign.datasets_builders import motion_judge as mj
from vidalign.errors import ConfigError, VidalignError

FRAMES = [np.full((6, 24, 24, 3), v, np.uint8) for v in (10, 90, 170, 250)]  # four distinct "renders"


def _judge(server, tmp_path, **kw):
    cfg = dict(url=server.url, model="vlm-test", cache=str(tmp_path / "cache.jsonl"), rpm=0, timeout_s=0.4,
               max_retries=2, backoff_s=0.01, n_frames=4)
    cfg.update(kw)
    return mj.OpenAICompatibleJudge(mj.JudgeConfig(**cfg))


def test_parse_score_accepts_json_and_text_and_refuses_junk():
    assert mj.parse_score('{"score": 7, "reason": "ok"}') == (7.0, "ok")
    assert mj.parse_score('```json\n{"score": 3.5}\n```')[0] == 3.5
    assert mj.parse_score("The motion... Score: 9/10")[0] == 9.0
    for junk in ["", "no idea", '{"score": 14}', '{"score": "high"}', "score: -2"]:
        with pytest.raises(mj.JudgeReplyError):
            mj.parse_score(junk)


def test_request_format_and_cache(chat_server, chat_reply, tmp_path, monkeypatch):
    monkeypatch.setenv("VLM_KEY", "sk-test")
    server = chat_server(lambda n, body: chat_reply(json.dumps({"score": n + 1, "reason": f"r{n}"})))
    judge = _judge(server, tmp_path, api_key_env="VLM_KEY")
    v = [judge.judge("A person jumps up two times.", "frequency", f) for f in FRAMES[:2]]
    assert [x.score for x in v] == [1.0, 2.0] and v[0].reason == "r0" and not v[0].cached
    req = server.requests[0]
    assert server.paths[0] == "/v1/chat/completions" and req["model"] == "vlm-test"
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    parts = req["messages"][0]["content"]
    assert "FREQUENCY" in parts[0]["text"] and "Description: A person jumps up two times." in parts[0]["text"]
    assert len(parts) == 2 and parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    jpeg = base64.b64decode(parts[1]["image_url"]["url"].split(",", 1)[1])
    assert jpeg[:2] == b"\xff\xd8"  # one JPEG contact sheet
    assert [len(x) > 100 for x in mj.judge_images(FRAMES[0], 3, layout="frames")] == [True] * 3
    # a rerun (new client, same cache file) pays nothing; another prompt is a new request
    again = _judge(server, tmp_path, api_key_env="VLM_KEY")
    hit = again.judge("A person jumps up two times.", "frequency", FRAMES[1])
    assert hit.score == 2.0 and hit.cached and again.requests == 0 and len(server.requests) == 2
    assert again.judge("A person bows two times.", "frequency", FRAMES[1]).score == 3.0
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 3


def test_malformed_timeout_and_429_are_retried_without_losing_candidates(chat_server, chat_reply, tmp_path):
    good = json.dumps({"score": 8})
    script = {0: chat_reply("I cannot rate this."),                               # malformed → retry
              1: chat_reply(good),
              2: chat_reply("", status=429, headers={"Retry-After": "0"}),       # rate limited → retry
              3: chat_reply('{"score": 2}'),
              4: chat_reply(good, delay=1.0),                                      # timeout → retry
              5: chat_reply('{"score": 5}'),
              6: chat_reply("", status=503)}                                       # server error → retry
    server = chat_server(lambda n, body: script.get(n, chat_reply('{"score": 6}')))
    judge = _judge(server, tmp_path)
    verdicts = judge.judge_all("A person waves the left hand.", "integrity", FRAMES)
    assert [v.score for v in verdicts] == [8.0, 2.0, 5.0, 6.0]
    assert [v.attempts for v in verdicts] == [2, 2, 2, 2] and all(v.ok for v in verdicts)
    assert len(server.requests) == 8
    pairs = mj.select_pairs([v.score for v in verdicts], pairs_per_prompt=2)
    assert [(p.chosen, p.rejected, p.gap) for p in pairs] == [(0, 1, 6.0), (3, 2, 1.0)]


def test_a_judge_that_never_answers_well_is_recorded_not_lost(chat_server, chat_reply, tmp_path):
    def script(n, body):
        sheet = body["messages"][0]["content"][1]["image_url"]["url"]
        return chat_reply("no score here") if sheet == bad_url else chat_reply('{"score": 4}')

    bad_url = "data:image/jpeg;base64," + base64.b64encode(mj.judge_images(FRAMES[2], 4)[0]).decode()
    server = chat_server(script)
    judge = _judge(server, tmp_path)
    verdicts = judge.judge_all("A person sits down, then stands up.", "temporal", FRAMES)
    assert [v.ok for v in verdicts] == [True, True, False, True]
    assert verdicts[2].score is None and "no score" in verdicts[2].error and verdicts[2].attempts == 3
    assert len(server.requests) == 3 + 3
    # the failure is not cached: a rerun retries only that candidate
    again = _judge(server, tmp_path)
    assert [v.cached for v in again.judge_all("A person sits down, then stands up.", "temporal", FRAMES)] == \
        [True, True, False, True]
    assert again.requests == 3


def test_bad_key_and_config_are_one_line_errors(chat_server, chat_reply, tmp_path):
    server = chat_server(lambda n, body: chat_reply("", status=401))
    with pytest.raises(VidalignError, match=r"HTTP 401.*\$OPENAI_API_KEY"):
        _judge(server, tmp_path).judge("A person bows.", "integrity", FRAMES[0])
    with pytest.raises(ConfigError, match="url"):
        mj.JudgeConfig(url="api.openai.com", model="gpt-4o")
    with pytest.raises(ConfigError, match="sub_task"):
        mj.rubric_text("speed", "x")
    with pytest.raises(ConfigError, match="unknown"):
        mj.make_judge("nope", mj.JudgeConfig(url="http://127.0.0.1:1/v1", model="m"))


def test_rate_limiter_spaces_requests():
    clock = [0.0]
    slept = []
    lim = mj.RateLimiter(rpm=120, clock=lambda: clock[0], sleep=lambda s: (slept.append(s), clock.__setitem__(0, clock[0] + s)))
    for _ in range(4):
        lim.wait()
    assert slept == pytest.approx([0.5, 0.5, 0.5])
    mj.RateLimiter(0).wait()  # unlimited: no sleep at all


def test_select_pairs_modes():
    s = [5.0, None, 9.0, 1.0, 5.0, 7.0]
    assert [(p.chosen, p.rejected) for p in mj.select_pairs(s, "best-worst", 3)] == [(2, 3), (5, 4)]
    assert mj.select_pairs([3.0, 3.0]) == []  # ties never pair
    gap = mj.select_pairs(s, "gap", pairs_per_prompt=0, min_gap=4.0)
    assert [(p.chosen, p.rejected, p.gap) for p in gap] == [(2, 3, 8.0), (5, 3, 6.0), (0, 3, 4.0), (2, 0, 4.0),
                                                           (2, 4, 4.0), (4, 3, 4.0)]
    assert len(mj.select_pairs(s, "gap", pairs_per_prompt=2)) == 2
    with pytest.raises(ConfigError, match="mode"):
        mj.select_pairs(s, "random")
