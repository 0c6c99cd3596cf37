"""The batched C sampler (`csrc/sample.c`) against its definition (`alpha.model.sampling`): the same
token, logprobs and stream positions, bit for bit, over random rows and settings."""

from __future__ import annotations

import math
import random
from array import array

from alpha.core.rng import Stream
from alpha.model.sampling import BatchSampler, RowSpec, sample_exp, sample_row, sample_token


def test_sample_exp_is_within_two_ulp_of_libm():
    rnd = random.Random(3)
    ys = [0.0, -1e-300, -0.5, -0.34657359, -0.34657360, -1.0, -707.9, -708.0, -709.0, -1e9]
    ys += [-rnd.random() * 710 for _ in range(3000)] + [-rnd.random() for _ in range(3000)]
    for y in ys:
        want = math.exp(y) if y >= -708.0 else 0.0
        assert abs(sample_exp(y) - want) <= 2 * math.ulp(want), y


def _random_case(rnd: random.Random, V: int, M: int, typecode: str):
    logits = array(typecode, [rnd.gauss(0, 3) if rnd.random() > 0.05 else 1.5
                              for _ in range(M * V)])  # some ties
    specs, refs = [], []
    for _ in range(M):
        kw = dict(temperature=rnd.choice([0.0, 0.5, 1.0, 1.7]),
                  top_k=rnd.choice([0, 0, 1, 5, 80, V - 1, V + 3]),
                  top_p=rnd.choice([1.0, 1.0, 0.9, 0.3]),
                  presence_penalty=rnd.choice([0.0, 0.5]),
                  frequency_penalty=rnd.choice([0.0, -0.3, 0.3]),
                  logprobs=rnd.choice([None, 0, 3]))
        counts = {rnd.randrange(V): rnd.randint(1, 4) for _ in range(rnd.randint(0, 5))}
        key, pos = (rnd.getrandbits(32), rnd.getrandbits(32)), rnd.randint(0, 99)
        specs.append(RowSpec(**kw, stream=Stream(key, pos), counts=counts))
        refs.append(RowSpec(**kw, stream=Stream(key, pos), counts=counts))
    return logits, specs, refs


def test_c_sampler_matches_the_definition_bitwise():
    rnd = random.Random(1)
    V = 97  # odd: vector tails
    for trial in range(120):
        M = rnd.randint(1, 9)
        logits, specs, refs = _random_case(rnd, V, M, "f" if trial % 3 else "d")
        got = BatchSampler(V).sample(logits, specs)
        want = [sample_row(logits[i * V:(i + 1) * V], refs[i]) for i in range(M)]
        assert got == want, trial
        assert [s.stream.position for s in specs] == [s.stream.position for s in refs]


def test_c_sampler_matches_the_definition_on_a_decode_steps_rows():
    """A serving step's rows: mostly unfiltered (temperature > 0, no top-k or top-p) beside a few
    filtered or greedy ones, 2 to 33 rows, on 1 and 2 threads (the random cases above rarely have
    more than one unfiltered row)."""
    from alpha.tensor import build

    rnd = random.Random(2)
    V = 203
    before = build.num_threads()
    try:
        for threads in (1, 2):
            build.set_num_threads(threads)
            for M in (2, 7, 33):
                logits, specs, refs = _random_case(rnd, V, M, "f")
                for i in range(M):
                    if i % 5 != 3:  # every fifth row keeps its random filters
                        t, k = rnd.choice([0.5, 0.8, 1.7]), rnd.choice([0, V, V + 1])
                        for spec in (specs[i], refs[i]):
                            spec.temperature, spec.top_k, spec.top_p = t, k, 1.0
                got = BatchSampler(V).sample(logits, specs)
                want = [sample_row(logits[i * V:(i + 1) * V], refs[i]) for i in range(M)]
                assert got == want, (threads, M)
    finally:
        build.set_num_threads(before)


def test_c_sampler_rules_on_a_known_row():
    """Greedy takes the lowest id among ties, a stream word is used only when sampling, top-k 1
    is greedy, and u walks the cumulative mass in id order."""
    V = 4
    row = array("f", [1.0, 3.0, 0.5, 3.0])
    s = BatchSampler(V)
    st = Stream((9, 9))
    assert s.sample(row, [RowSpec(temperature=0.0, stream=st)])[0].id == 1
    assert st.position == 0
    assert s.sample(row, [RowSpec(temperature=5.0, top_k=1, stream=st)])[0].id == 1
    assert st.position == 1
    # a large presence penalty on ids 1 and 3 leaves id 0 as the greedy pick
    pick = s.sample(row, [RowSpec(temperature=0.0, presence_penalty=10.0, counts={1: 1, 3: 2},
                                  logprobs=2)])[0]
    assert pick.id == 0 and pick.top[0][0] == 0 and pick.logprob == pick.top[0][1]
    assert [t for t, _ in pick.top] == [0, 2]  # e^1 : e^0.5, the penalised ids ~0
    assert abs(sum(math.exp(lp) for _, lp in pick.top) - 1.0) < 1e-3
    for w in range(40):  # the definition, fed the same word, picks the same token
        st1, st2 = Stream((5, w)), Stream((5, w))
        got = s.sample(row, [RowSpec(temperature=1.0, stream=st1)])[0].id
        u = st2.random()
        assert got == sample_token(list(row), 1.0, u=u)
