"""FilterTrie: MQTT's matching rules, paho's order, and no garbage per match."""

from __future__ import annotations

import gc
import random

from paho.mqtt.client import topic_matches_sub
from paho.mqtt.matcher import MQTTMatcher
import pytest

from custom_components.cloudsync.client.topics import FilterTrie

_LEVELS = ("a", "b", "", "$SYS", "c d", "ä")


def _filters(rng: random.Random) -> set[str]:
    filters: set[str] = {"#", "+", "+/#", "$SYS/#"}
    while len(filters) < 60:
        levels = [rng.choice((*_LEVELS, "+", "+")) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.3:
            levels.append("#")
        filters.add("/".join(levels))
    return filters


def _topics(rng: random.Random) -> list[str]:
    return [
        "/".join(rng.choice(_LEVELS) for _ in range(rng.randint(1, 5)))
        for _ in range(400)
    ]


@pytest.mark.parametrize("seed", range(5))
def test_matches_what_mqtt_says_in_pahos_order(seed: int) -> None:
    """Every filter the rules match, once, in the order paho's MQTTMatcher gives."""
    rng = random.Random(seed)
    filters = _filters(rng)
    ours: FilterTrie[str] = FilterTrie()
    pahos = MQTTMatcher()
    for topic_filter in filters:
        ours[topic_filter] = topic_filter
        pahos[topic_filter] = topic_filter
    for topic in _topics(rng):
        found = ours.match(topic)
        assert found == list(pahos.iter_match(topic)), topic
        assert sorted(found) == sorted(
            f for f in filters if topic_matches_sub(f, topic)
        ), topic


def test_dollar_topics_and_parent_levels() -> None:
    """# also matches its parent level; wildcards first do not match $ topics."""
    trie: FilterTrie[int] = FilterTrie()
    trie["#"] = 1
    trie["+/status"] = 2
    trie["home/#"] = 3
    trie["$SYS/+"] = 4
    assert trie.match("home") == [3, 1]
    assert trie.match("home/status") == [3, 2, 1]  # exact level first, then +
    assert trie.match("$SYS/load") == [4]
    assert trie.match("$SYS/load/1") == []
    assert list(trie.iter_match("other/x")) == [1]


def test_replace_remove_and_prune() -> None:
    """A filter set again replaces its value; removing one leaves the others."""
    trie: FilterTrie[str] = FilterTrie()
    trie["a/b/c"] = "old"
    trie["a/b/c"] = "new"
    trie["a/+"] = "plus"
    assert trie.match("a/b/c") == ["new"]
    with pytest.raises(KeyError):
        del trie["a/b"]  # a level of a filter, not a filter
    with pytest.raises(KeyError):
        del trie["x/y"]
    del trie["a/b/c"]
    assert trie.match("a/b/c") == []
    assert trie.match("a/b") == ["plus"]
    assert "b" not in trie._root.children["a"].children  # emptied levels pruned
    del trie["a/+"]
    assert trie._root.children == {}
    trie["a/b/c"] = "back"
    assert trie.match("a/b/c") == ["back"]


def test_matching_leaves_no_garbage() -> None:
    """A match frees all it made by reference counting: no cycle for the collector.

    (paho's MQTTMatcher leaves a recursive closure per match, 5 objects in a cycle.)
    """
    trie: FilterTrie[int] = FilterTrie()
    for index, topic_filter in enumerate(("home/+/state", "home/#", "#", "x/y")):
        trie[topic_filter] = index
    gc.collect()
    gc.disable()
    try:
        for _ in range(1000):
            assert len(trie.match("home/kitchen/state")) == 3
            assert next(trie.iter_match("x/y"), None) == 3
        assert gc.collect() == 0
        matcher = MQTTMatcher()
        matcher["home/#"] = 1
        for _ in range(100):
            list(matcher.iter_match("home/kitchen/state"))
        assert gc.collect() >= 100  # the cycle this replaces (the test can fail)
    finally:
        gc.enable()
