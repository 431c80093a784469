"""IouTracker: stable ids and a count of distinct objects, scored on the synthetic endoscope's
exact truth (its track ids) and on hand-made cases for each rule."""
import numpy as np
import pytest

from gi_sdk.synthetic import SyntheticEndoscope
from gi_sdk.tracker import UNCONFIRMED, IouTracker, match_greedy


def _box(x, y, w=20, h=20):
    return [x, y, x + w, y + h]


# ------------------------------------------------------------------ matching
@pytest.mark.parametrize("iou,threshold,pairs,why", [
    (np.zeros((0, 0)), 0.3, [], "nothing to match"),
    (np.zeros((2, 0)), 0.3, [], "tracks but no detections"),
    (np.array([[0.9, 0.5], [0.6, 0.1]]), 0.3, [(0, 0)], "the best pair takes both; the rest overlaps too little"),
    (np.array([[0.9, 0.5], [0.6, 0.4]]), 0.3, [(0, 0), (1, 1)], "greedy: best first, then the best left"),
    (np.array([[0.2, 0.1]]), 0.3, [], "below the threshold nothing matches"),
    (np.array([[0.3]]), 0.3, [(0, 0)], "the threshold itself matches"),
    (np.array([[0.5, 0.5]]), 0.3, [(0, 0)], "ties go to the lower index: the same input gives the same ids"),
])
def test_match_greedy(iou, threshold, pairs, why):
    assert match_greedy(iou, threshold) == pairs, why


# ------------------------------------------------------------------ rules
def test_ids_are_given_on_confirmation_and_then_kept():
    tracker = IouTracker(min_hits=2)
    first = tracker.update([_box(10, 10)], ["polyp"])
    assert first.tolist() == [UNCONFIRMED] and tracker.seen == {}   # one sighting is not a polyp yet
    second = tracker.update([_box(12, 11)], ["polyp"])
    assert second.tolist() == [1] and tracker.seen == {"polyp": 1}
    for step in range(5):
        assert tracker.update([_box(14 + 2 * step, 12)], ["polyp"]).tolist() == [1]
    assert tracker.seen == {"polyp": 1}


def test_a_missed_object_keeps_its_id_for_max_missed_results_then_is_new():
    tracker = IouTracker(min_hits=1, max_missed=2)
    assert tracker.update([_box(10, 10)], ["polyp"]).tolist() == [1]
    for _ in range(2):                              # hidden by a fold for two model results
        tracker.update(np.zeros((0, 4)), [])
    assert tracker.update([_box(10, 10)], ["polyp"]).tolist() == [1]
    for _ in range(3):                              # gone longer than max_missed: forgotten
        tracker.update(np.zeros((0, 4)), [])
    assert tracker.update([_box(10, 10)], ["polyp"]).tolist() == [2]
    assert tracker.seen == {"polyp": 2} and len(tracker.tracks) == 1


def test_labels_never_share_a_track():
    tracker = IouTracker(min_hits=1)
    ids = tracker.update([_box(10, 10), _box(11, 10)], ["polyp", "instrument"])
    ids2 = tracker.update([_box(11, 10), _box(10, 10)], ["instrument", "polyp"])
    assert ids2.tolist() == ids[::-1].tolist()
    assert tracker.seen == {"polyp": 1, "instrument": 1}


def test_two_close_objects_keep_their_own_ids_when_they_swap_order():
    tracker = IouTracker(min_hits=1)
    a, b = tracker.update([_box(10, 10), _box(60, 10)], ["polyp", "polyp"]).tolist()
    assert tracker.update([_box(62, 10), _box(12, 10)], ["polyp", "polyp"]).tolist() == [b, a]


def test_a_one_off_false_positive_is_not_counted():
    tracker = IouTracker(min_hits=2)
    tracker.update([_box(10, 10), _box(200, 150)], ["polyp", "polyp"])   # the second one is noise
    for _ in range(4):
        tracker.update([_box(10, 10)], ["polyp"])
    assert tracker.seen == {"polyp": 1}


def test_only_a_sure_detection_starts_a_track_but_any_detection_continues_one():
    # ByteTrack's rule: unsure false boxes that come and go (the built-in model's) never start
    # tracks, while a real object's unsure frames still keep its track and id
    tracker = IouTracker(min_hits=2, start_score=0.6)
    for k in range(6):   # an unsure box somewhere new every result
        ids = tracker.update([_box(10 + 100 * k, 50)], ["polyp"], [0.55])
        assert ids.tolist() == [UNCONFIRMED]
    assert tracker.seen == {} and tracker.tracks == []
    tracker.update([_box(10, 10)], ["polyp"], [0.9])            # sure: starts a track
    first = tracker.update([_box(12, 11)], ["polyp"], [0.3])    # unsure, on the track: confirms it
    later = tracker.update([_box(14, 12)], ["polyp"], [0.2])
    assert first.tolist() == later.tolist() == [1] and tracker.seen == {"polyp": 1}
    # without scores, or with start_score 0, every detection may start a track (the old rule)
    assert IouTracker(min_hits=1).update([_box(10, 10)], ["polyp"]).tolist() == [1]
    assert IouTracker(min_hits=1, start_score=0).update([_box(10, 10)], ["polyp"], [0.0]).tolist() == [1]


def test_a_second_box_on_a_tracked_object_starts_no_new_object():
    # a generative detector now and then writes two near-identical boxes for one polyp; the
    # extra one must neither add a polyp nor take the track over (before: it did both, and the
    # real track died a few results later: one polyp counted twice)
    tracker = IouTracker(min_hits=2)
    for k in range(3):
        tracker.update([_box(10 + k, 10)], ["polyp"], [0.9])
    ids = tracker.update([_box(13, 10), _box(14, 12)], ["polyp", "polyp"], [0.9, 0.9])
    assert sorted(ids.tolist()) == [UNCONFIRMED, 1]
    for k in range(5):
        assert tracker.update([_box(15 + k, 12)], ["polyp"], [0.9]).tolist() == [1]
    assert tracker.seen == {"polyp": 1} and len(tracker.tracks) == 1
    # a box apart from the track is another object, and one of another label is its own
    ids = tracker.update([_box(20, 12), _box(200, 150), _box(21, 12)], ["polyp", "polyp", "instrument"], [0.9] * 3)
    assert ids.tolist() == [1, UNCONFIRMED, UNCONFIRMED] and len(tracker.tracks) == 3


def test_tracks_do_not_pile_up_over_a_long_video():
    tracker = IouTracker(min_hits=1, max_missed=3)
    rng = np.random.default_rng(0)
    for _ in range(2000):   # a new object every result, each seen once: a memory-growth trap
        tracker.update([_box(*rng.integers(0, 1000, 2))], ["polyp"])
    assert len(tracker.tracks) <= 4 + 1


@pytest.mark.parametrize("boxes,labels", [
    (np.zeros((2, 4)), ["polyp"]),                  # one label short
    (np.zeros((1, 4)), ["polyp", "polyp"]),         # one box short
])
def test_boxes_and_labels_must_agree(boxes, labels):
    with pytest.raises(ValueError, match="boxes but"):
        IouTracker().update(boxes, labels)
    with pytest.raises(ValueError, match="boxes but 3 scores"):
        IouTracker().update(np.zeros((len(labels), 4)), labels, [0.9] * 3)


@pytest.mark.parametrize("kwargs", [{"iou_threshold": 0.0}, {"iou_threshold": 1.5}, {"min_hits": 0}, {"max_missed": -1},
                                    {"start_score": 1.2}, {"start_score": -0.1}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        IouTracker(**kwargs)


# ------------------------------------------------------------------ on the synthetic video's truth
@pytest.fixture(scope="module")
def truth_seed0():
    """Truth of every third frame of 30 s of the synthetic video, seed 0 (five scene cuts,
    polyps drifting across the view, an instrument coming in)."""
    scope = SyntheticEndoscope(seed=0, width=320, height=240)
    return [scope.frame(i)[1] for i in range(0, 900, 3)]


def _score(truths, tracker, drop=None, jitter=0.0, rng=None):
    """Feed truth boxes as detections; return tracker id -> truth ids and truth id -> tracker ids."""
    by_tracker, by_truth = {}, {}
    for k, truth in enumerate(truths):
        keep = [i for i in range(len(truth)) if drop is None or not drop(k, truth.track_ids[i])]
        boxes = truth.boxes[keep] + (rng.normal(0, jitter, (len(keep), 4)) if jitter else 0)
        ids = tracker.update(boxes.astype(np.float32), [truth.labels[i] for i in keep])
        for tid, i in zip(ids, keep):
            if tid != UNCONFIRMED:
                by_tracker.setdefault(int(tid), set()).add(truth.track_ids[i])
                by_truth.setdefault(truth.track_ids[i], set()).add(int(tid))
    return by_tracker, by_truth


def _truth_counts(truths):
    seen = {}
    for truth in truths:
        for label, tid in zip(truth.labels, truth.track_ids):
            seen.setdefault(label, set()).add(tid)
    return {label: len(ids) for label, ids in seen.items()}


@pytest.mark.parametrize("every", [1, 2], ids=["model at 10 Hz", "model at 5 Hz"])
def test_one_id_per_synthetic_object_and_the_count_matches_the_truth(truth_seed0, every):
    # seed 0 keeps its objects in view and moving smoothly; other seeds hide a polyp behind a
    # fold for longer than max_missed, which gives it a second id (a limit of IoU tracking)
    truths = truth_seed0[::every]
    tracker = IouTracker()
    by_tracker, by_truth = _score(truths, tracker)
    assert all(len(v) == 1 for v in by_tracker.values()), f"one id covered two objects: {by_tracker}"
    assert all(len(v) == 1 for v in by_truth.values()), f"one object got two ids: {by_truth}"
    assert tracker.seen == _truth_counts(truths) == {"polyp": 6, "instrument": 1}


class _Misses:
    """Drops a quarter of the detections at random, but never an object's first two sightings
    (a track needs them to be confirmed and to learn its speed) and never more than three in a
    row (past ``max_missed`` a track is gone by design)."""

    def __init__(self, seed, rate=0.25, max_run=3):
        self.rng, self.rate, self.max_run = np.random.default_rng(seed), rate, max_run
        self.sightings, self.run, self.dropped = {}, {}, 0

    def __call__(self, k, tid):
        n = self.sightings[tid] = self.sightings.get(tid, 0) + 1
        drop = n > 2 and self.run.get(tid, 0) < self.max_run and self.rng.random() < self.rate
        self.run[tid] = self.run.get(tid, 0) + 1 if drop else 0
        self.dropped += drop
        return drop


@pytest.mark.parametrize("seed", range(4))
def test_the_count_survives_noisy_boxes_and_missed_detections(truth_seed0, seed):
    misses = _Misses(seed)
    tracker = IouTracker(max_missed=5)
    by_tracker, by_truth = _score(truth_seed0, tracker, drop=misses, jitter=1.5, rng=np.random.default_rng(seed))
    assert misses.dropped > 0.15 * sum(misses.sightings.values())   # the misses really happened
    assert all(len(v) == 1 for v in by_tracker.values()), f"one id covered two objects: {by_tracker}"
    assert all(len(v) == 1 for v in by_truth.values()), f"one object got two ids: {by_truth}"
    assert tracker.seen == _truth_counts(truth_seed0)


def test_moving_objects_missed_for_a_while_are_found_where_they_went():
    # 6 px per result on a 20 px box: after three misses the last box no longer overlaps the
    # object (IoU 0); the constant-velocity prediction still finds it
    tracker = IouTracker(min_hits=1, max_missed=5)
    for k in range(6):
        assert tracker.update([_box(10 + 6 * k, 50)], ["polyp"]).tolist() == [1]
    for k in range(6, 9):
        tracker.update(np.zeros((0, 4)), [])
    assert tracker.update([_box(10 + 6 * 9, 50)], ["polyp"]).tolist() == [1]
