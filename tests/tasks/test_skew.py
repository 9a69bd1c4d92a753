"""skewed: the subsampled training split has the stated skew, the eval split is untouched."""

from __future__ import annotations

import pytest

from tests.tasks.helpers import load_or_skip
from workbench.errors import WorkbenchError
from workbench.tasks.skew import class_counts, skewed


def test_topic_skewed_nine_to_one():
    topic = load_or_skip("topic")
    s = skewed(topic, ratio=9, n_majority=72, seed=1)
    counts = class_counts(s.train)
    major = sorted(class_counts(topic.train))[0]
    assert counts[major] == 72 and all(n == 8 for c, n in counts.items() if c != major)
    assert s.eval == topic.eval and s.metric == "balanced_accuracy" and s.name == "topic_skew9"
    assert set(map(id, s.train)) <= set(map(id, topic.train))  # a subsample of the real training data
    assert skewed(topic, ratio=9, n_majority=72, seed=1).train == s.train  # seeded
    assert skewed(topic, ratio=9, n_majority=72, seed=2).train != s.train
    with pytest.raises(WorkbenchError, match="fewer than"):
        skewed(topic, ratio=1, n_majority=100)
    with pytest.raises(WorkbenchError, match="ratio"):
        skewed(topic, ratio=0.5)
