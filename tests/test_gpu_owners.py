"""Our runs found on the GPUs by pid, and by memory when NVML reports host pids."""

from __future__ import annotations

from console.gpu.owners import OurRun, attribute, in_container


def test_pids_match_directly_on_the_host():
    runs = [OurRun("2d/0", "gpu0", {100, 101}), OurRun("2d/1", "gpu1", {200})]
    got = attribute({0: [(101, 9000.0, True), (555, 100.0, True)], 1: [(200, 5000.0, True)]}, runs)
    assert got == {(0, 101): "2d/0", (1, 200): "2d/1"}        # 555 is foreign


def test_host_pids_in_a_container_are_matched_by_memory_per_gpu():
    runs = [OurRun("2d/0", "gpu0", {10}, peak_mem_mb=3000.0),
            OurRun("3d_fullres/0", "gpu0", {20}, peak_mem_mb=20000.0),
            OurRun("2d/1", "gpu1", {30}, peak_mem_mb=None)]
    procs = {0: [(81234, 3600.0, False), (81999, 21000.0, False)],
             1: [(90001, 4000.0, False), (90002, 12000.0, False)]}
    got = attribute(procs, runs)
    assert got[(0, 81999)] == "3d_fullres/0" and got[(0, 81234)] == "2d/0"
    # gpu1: one run of ours, two unseen processes: the larger one is taken, one stays foreign
    assert got[(1, 90002)] == "2d/1" and (1, 90001) not in got


def test_in_container_reads_nspid(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("Name:\tpython\nNSpid:\t81234\t17\n")
    assert in_container(str(tmp_path))
    (tmp_path / "self" / "status").write_text("Name:\tpython\nNSpid:\t17\n")
    assert not in_container(str(tmp_path))
