"""The label-free ID-conflict check (antrax_pipe.conflicts) on hand-made autoID rows with known answers."""

from antrax_pipe.conflicts import find_conflicts, resolve_conflicts
from antrax_pipe.model import UNKNOWN, AutoID

IDS = ("A", "B")


def row(blob, first, last, label, score=1.0, movie=1):
    return AutoID(f"trj_id{blob}_ti{movie}_{first}_tf{movie}_{last}", label, score, 1 if label in IDS else 0)


def test_overlapping_tracklets_with_one_id_conflict_and_others_do_not():
    rows = [
        row(1, 1, 100, "A", 50.0),
        row(2, 90, 120, "A", 10.0),  # overlaps 1 on frames 90-100
        row(3, 101, 200, "A", 30.0),  # touches 1 only after it ended, overlaps 2 on 101-120
        row(4, 1, 300, "B", 99.0),  # another ID: no conflict with A
        row(5, 1, 300, "NoAnt"),  # not an ID
        row(6, 1, 300, UNKNOWN),
        row(7, 150, 160, "B", 5.0),  # inside 4
    ]
    got = {(c.label, c.tracklet.split("_")[1], c.other.split("_")[1], c.overlap_frames) for c in find_conflicts(rows, IDS)}
    assert got == {("A", "id1", "id2", 11), ("A", "id2", "id3", 20), ("B", "id4", "id7", 11)}


def test_no_conflict_without_overlap_or_across_movies():
    rows = [row(1, 1, 10, "A"), row(2, 11, 20, "A"), row(3, 1, 20, "A", movie=2)]
    assert find_conflicts(rows, IDS) == []
    # a tracklet whose name spans movies, or is not an anTraX name, is never counted
    odd = [AutoID("trj_id9_ti1_5_tf2_3", "A", 1.0, 1), AutoID("weird", "A", 1.0, 1), row(1, 1, 10, "A")]
    assert find_conflicts(odd, IDS) == []


def test_resolution_keeps_the_tracklet_with_more_evidence():
    rows = [row(1, 1, 100, "A", 50.0), row(2, 90, 120, "A", 10.0), row(3, 101, 200, "A", 30.0),
            row(4, 1, 300, "B", 99.0)]
    out, dropped = resolve_conflicts(rows, IDS)
    assert [r.label for r in out] == ["A", UNKNOWN, "A", "B"]  # 2 loses to 1 (and to 3); 1 and 3 do not overlap
    assert dropped == [rows[1].tracklet]
    assert out[1] == AutoID(rows[1].tracklet, UNKNOWN, 0.0, 0)
    assert [r.tracklet for r in out] == [r.tracklet for r in rows]  # order kept
    assert find_conflicts(out, IDS) == []


def test_resolution_of_a_chain_is_greedy_by_score():
    # 1 overlaps 2, 2 overlaps 3; 2 has the most evidence: it wins both, 1 and 3 become Unknown
    rows = [row(1, 1, 50, "A", 5.0), row(2, 40, 80, "A", 9.0), row(3, 70, 120, "A", 6.0)]
    out, dropped = resolve_conflicts(rows, IDS)
    assert [r.label for r in out] == [UNKNOWN, "A", UNKNOWN] and len(dropped) == 2
