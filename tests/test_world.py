import numpy as np
import pytest

from sparseclip.data.tasks import TASK_NAMES, TASK_SPECS, retrieval_set, zero_shot_task
from sparseclip.data.world import BACKGROUNDS, COLORS, CONCEPTS, POSITIONS, World


def test_deterministic_by_seed_and_index():
    a, b = World(seed=3), World(seed=3)
    for i in (0, 5, 99):
        ia, ca, la = a.sample(i)
        ib, cb, lb = b.sample(i)
        assert ca == cb and la == lb and np.array_equal(np.asarray(ia), np.asarray(ib))
    other = World(seed=4)
    assert [other.sample(i)[1] for i in range(20)] != [a.sample(i)[1] for i in range(20)]


def test_labels_match_caption_and_pixels():
    w = World(seed=0, image_size=32)
    for i in range(200):
        s = w.scene(i)
        assert s.labels <= set(CONCEPTS)
        assert f"count:{s.count}" in s.labels and 1 <= s.count <= 3
        for o in s.objects:
            assert o.color in s.caption and o.shape in s.caption  # every caption names every object
        positions = [o.position for o in s.objects]
        assert len(set(positions)) == len(positions)
    # pixel check: a single large red square at the centre is red there, background elsewhere
    single = World(seed=0, image_size=32, max_objects=1)
    s = single.scene(0, color="red", shape="square", size="large", position="center", background="dark")
    img = np.asarray(single.render(s)).astype(int)
    centre, corner = img[16, 16], img[1, 1]
    assert centre[0] > 150 and centre[1] < 100 and centre[2] < 100
    assert np.abs(corner - np.array(BACKGROUNDS["dark"])).max() < 40


def test_fixed_properties_are_respected():
    w = World(seed=1, max_objects=1)
    for color in COLORS:
        for pos in POSITIONS:
            s = w.scene(7, color=color, position=pos)
            assert s.objects[0].color == color and s.objects[0].position == pos
            assert f"color:{color}" in s.labels


def test_zero_shot_tasks_are_balanced_and_labelled():
    for task in TASK_NAMES:
        t = zero_shot_task(task, 30, seed=1)
        classes, templates = TASK_SPECS[task]
        assert t.classnames == classes and len(t.images) == 30
        counts = np.bincount(t.targets, minlength=len(classes))
        assert counts.max() - counts.min() <= 1
    t = zero_shot_task("color", 12, seed=1)
    assert zero_shot_task("color", 12, seed=1).targets == t.targets
    with pytest.raises(ValueError, match="unknown task"):
        zero_shot_task("smell", 3, seed=1)


def test_retrieval_set_captions_belong_to_images():
    r = retrieval_set(10, seed=1, captions_per_image=2)
    assert len(r.captions) == 20 and r.caption_image == [i // 2 for i in range(20)]
    assert sum(r.captions[2 * i] != r.captions[2 * i + 1] for i in range(10)) >= 7  # paraphrases differ


def test_train_and_val_seeds_differ():
    tr, va = World(seed=0), World(seed=1)
    assert sum(tr.sample(i)[1] == va.sample(i)[1] for i in range(50)) < 10
