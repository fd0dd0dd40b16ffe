"""The markdown summary of a GPU check report (benchmarks/gpu_check.py)."""

from __future__ import annotations


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# GPU check on {m['gpu']}", "", f"{m['date']}; `{m['command']}`; torch {m['torch']}, "
             f"triton {m['triton']}, CUDA {m['cuda']}; device copy bandwidth {report['copy_GBps']:.0f} GB/s", "",
             f"- `{report['tests']['command']}`: rc {report['tests']['returncode']} in {report['tests']['seconds']} s"]
    lines += [f"- {b['case']}, {b['mode']}: statistics {b['statistics_rel_diff_vs_reference']:.1e} vs reference, "
              f"advantages {b['advantages_diff_vs_torch']:.1e} vs torch, same bits {b['same_bits_twice']}"
              for b in report["big_groups"]]
    lines += [f"- N x L = {h['elements']:,} ({h['mode']}, bool mask): diff vs torch {h['max_abs_diff_vs_torch']:.1e}, "
              f"same bits {h['same_bits_twice']}, last row {h['last_row_matches']}" for h in report["huge"]]
    lines += [f"- launches ({c['mode']}, ids {'sorted' if c['ids_sorted'] else 'shuffled'}): {c['triton_launches']} "
              f"Triton + torch ops {c['torch_ops_that_launch']} "
              f"(budget {c['budget']}), {c['cuda_kernels_profiled']} CUDA kernels profiled, {c['host_reads']} host "
              f"read(s), {c['sync_warnings']} sync warning(s)" for c in report["launches"]]
    lines += ["", "| N x L | mask | mode | Triton ms | torch ms | floor GB/s | of copy BW | vs torch | goal |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['N']} x {r['L']} | {r['mask']} | {r['mode']} | {r['triton_ms']:.3f} | {r['torch_ms']:.3f} | "
              f"{r['floor_GBps']:.0f} | {r['share_of_copy_bandwidth']:.0%} | {r['speedup_vs_torch']:.1f}x | "
              f"{r.get('goal_met', '-')} |" for r in report["bench"]]
    lines += ["", "| N x L (CPU-resident, int64 mask, GDPO) | torch, 1 CPU thread ms | copy + Triton + copy back ms |",
              "|---|---|---|"]
    lines += [f"| {e['N']} x {e['L']} | {e['cpu_torch_1_thread_ms']:.2f} | {e['copy_triton_copy_back_ms']:.2f} |"
              for e in report["end_to_end"]]
    return "\n".join(lines) + "\n"
