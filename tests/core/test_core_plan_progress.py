"""Shard plans give every worker work without depending on --workers; progress moves per sample."""

import time

from vidalign.builder import BuildOptions, make_builder, plan_samples_per_shard
from vidalign.executors import run_tasks
from vidalign.runner import build_job, run_build


def test_plan_sizing_is_a_pure_function_of_the_arguments():
    # a drop clip is ~4.5 MB: 500 MB shards used to hold 111 clips, so 24 clips made one shard
    assert plan_samples_per_shard(24, 4.5, 500.0) == 111
    assert plan_samples_per_shard(24, 4.5, 500.0, expensive=True) == 1
    assert plan_samples_per_shard(5000, 4.5, 500.0, expensive=True) == 20  # 250 shards
    assert plan_samples_per_shard(10**6, 4.5, 500.0, expensive=True) == 111  # the size cap still holds
    assert plan_samples_per_shard(24, 4.5, 500.0, explicit=5, expensive=True) == 5
    b = make_builder("kubric-drop", {"num_samples": 24})
    jobs = b.plan()
    assert len(jobs) == 24 and jobs == make_builder("kubric-drop", {"num_samples": 24}).plan()
    assert [(j.start, j.stop) for j in jobs[:2]] == [(0, 1), (1, 2)]
    prompts = make_builder("dsr-prompts", {"n": 120}).plan()  # cheap samples keep one shard
    assert len(prompts) == 1


def test_workers_report_each_sample_before_the_shard_ends(tmp_path):
    b = make_builder("synthetic", {"num_samples": 4, "work_ms": 300.0}, samples_per_shard=2)
    jobs = b.plan()
    opts = {"seed": 0, "on_error": "raise", "samples_per_shard": 2, "shard_size": 500.0}
    events = []
    run_tasks(build_job, [("synthetic", {"num_samples": 4, "work_ms": 300.0}, opts, j, str(tmp_path))
                          for j in jobs],
              lambda r: events.append(("done", r["record"]["path"], time.monotonic())), workers=2,
              on_progress=lambda job, n: events.append(("progress", job, n)))
    for j in jobs:
        counts = [e[2] for e in events if e[0] == "progress" and e[1] == j.relpath]
        assert sum(counts) == 2 and len(counts) == 2, events  # per sample, not one message per shard
        first = next(i for i, e in enumerate(events) if e[1] == j.relpath)
        done = next(i for i, e in enumerate(events) if e[0] == "done" and e[1] == j.relpath)
        assert first < done


def test_progress_bar_counts_samples(tmp_path, capsys):
    run_build("synthetic", {"num_samples": 6}, BuildOptions(out=tmp_path / "ds", samples_per_shard=4))
    err = capsys.readouterr().err
    assert "6/6" in err and "sample" in err and "2/2 shards" in err
