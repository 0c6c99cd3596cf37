"""Tensor views: view (-1), permute, transpose, narrow, indexing and is_contiguous select the
right elements (read back through the reference backend), share storage, and reject bad views."""

from __future__ import annotations

import itertools

import pytest

from alpha.tensor.reference import ReferenceBackend
from alpha.tensor.tensor import Tensor, contiguous_strides

R = ReferenceBackend()


def base(shape=(2, 3, 4)):
    """A tensor whose element at multi-index i holds the number whose digits are i."""
    vals = [float("".join(str(d) for d in idx) or "0")
            for idx in itertools.product(*map(range, shape))]
    return R.from_array(vals, shape, "f64")


def el(t, *idx) -> float:
    """Element at a multi-index, computed from strides (independent of the backend)."""
    return t.storage[t.offset + sum(i * s for i, s in zip(idx, t.strides))]


def all_elements(t) -> list:
    return [el(t, *idx) for idx in itertools.product(*map(range, t.shape))]


def test_facts():
    t = base()
    assert t.shape == (2, 3, 4) and t.strides == (12, 4, 1) and t.offset == 0
    assert t.ndim == 3 and t.numel == 24 and t.itemsize == 8 and t.nbytes == 192
    assert t.is_contiguous
    assert contiguous_strides((5, 1, 3)) == (3, 3, 1)
    assert R.zeros((2, 3)).itemsize == 4 and R.zeros((3,), "u16").nbytes == 6
    assert list(R.to_array(t)) == all_elements(t)


def test_view():
    t = base()
    v = t.view(6, 4)
    assert v.shape == (6, 4) and list(R.to_array(v)) == list(R.to_array(t))
    assert t.view(-1).shape == (24,)
    assert t.view(4, -1).shape == (4, 6)
    assert t.view((2, 12)).shape == (2, 12)
    assert t.view([3, 2, -1]).shape == (3, 2, 4)
    assert v.tolist()[5] == [120.0, 121.0, 122.0, 123.0]
    assert t.view(1, 24).is_contiguous
    e = R.zeros((0, 3))
    assert e.view(3, 0).shape == (3, 0)


@pytest.mark.parametrize("shape", [(5, 5), (-1, -1), (7, -1), (25,), (0, -1)])
def test_bad_views(shape):
    with pytest.raises(ValueError):
        base().view(*shape)


def test_view_of_non_contiguous_fails():
    with pytest.raises(ValueError, match="non-contiguous"):
        base().transpose(0, 1).view(-1)
    with pytest.raises(ValueError, match="non-contiguous"):
        base().narrow(2, 1, 2).view(-1)


def test_permute_and_transpose():
    t = base()
    p = t.permute(2, 0, 1)
    assert p.shape == (4, 2, 3) and not p.is_contiguous
    for k, i, j in itertools.product(range(4), range(2), range(3)):
        assert el(p, k, i, j) == el(t, i, j, k)
    assert list(R.to_array(p)) == all_elements(p)
    assert t.permute((2, 0, 1)).shape == (4, 2, 3)
    assert t.permute(-1, 0, 1).strides == p.strides
    tt = t.transpose()  # the last two dims by default
    assert tt.shape == (2, 4, 3)
    assert tt.tolist()[1][3] == [103.0, 113.0, 123.0]
    assert t.transpose(0, 2).shape == (4, 3, 2)
    m = R.from_array([1, 2, 3, 4, 5, 6], (2, 3))
    assert m.T.tolist() == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    assert m.T.T.is_contiguous


@pytest.mark.parametrize("dims", [(0, 1), (0, 0, 1), (0, 1, 3), (0, 1, 2, 2)])
def test_bad_permutes(dims):
    with pytest.raises(ValueError):
        base().permute(*dims)


def test_transpose_bad_dim():
    with pytest.raises(ValueError, match="out of range"):
        base().transpose(0, 3)


def test_narrow():
    t = base()
    n = t.narrow(1, 1, 2)
    assert n.shape == (2, 2, 4) and n.offset == 4
    assert n.tolist()[1][0] == [110.0, 111.0, 112.0, 113.0]
    assert not n.is_contiguous
    first = t.narrow(0, 1, 1)
    assert first.is_contiguous and first.offset == 12  # leading-dim narrows stay contiguous
    assert first.view(-1).tolist()[0] == 100.0
    last = t.narrow(-1, 3, 1)
    assert list(R.to_array(last)) == [3.0, 13.0, 23.0, 103.0, 113.0, 123.0]
    assert t.narrow(2, 4, 0).numel == 0
    nested = t.narrow(2, 1, 3).narrow(2, 1, 1)
    assert list(R.to_array(nested)) == [2.0, 12.0, 22.0, 102.0, 112.0, 122.0]


@pytest.mark.parametrize("args", [(1, 2, 2), (1, -1, 1), (0, 0, 3), (3, 0, 1), (1, 0, -1)])
def test_bad_narrows(args):
    with pytest.raises(ValueError):
        base().narrow(*args)


def test_indexing():
    t = base()
    assert t[1].shape == (3, 4) and t[1].offset == 12
    assert t[1].tolist()[2] == [120.0, 121.0, 122.0, 123.0]
    assert t[-1, 2].tolist() == [120.0, 121.0, 122.0, 123.0]
    assert t[1, 2, 3].shape == () and t[1, 2, 3].item() == 123.0
    assert t[:, 1].tolist() == [[10.0, 11.0, 12.0, 13.0], [110.0, 111.0, 112.0, 113.0]]
    s = t[:, ::2]
    assert s.shape == (2, 2, 4) and s.strides == (12, 8, 1) and not s.is_contiguous
    assert [row[0] for row in s.tolist()[0]] == [0.0, 20.0]
    assert t[0, 1:].shape == (2, 4)
    assert t[0, 5:].shape == (0, 4)
    assert t[:, :, 1::2].tolist()[1][2] == [121.0, 123.0]
    assert list(R.to_array(t[::2, 1:, 1::2])) == [11.0, 13.0, 21.0, 23.0]


@pytest.mark.parametrize("idx,exc", [
    ((2,), ValueError), ((-3,), ValueError), ((0, 0, 0, 0), ValueError),
    ((slice(None, None, -1),), ValueError), (("a",), TypeError), ((1.5,), TypeError),
])
def test_bad_indexing(idx, exc):
    with pytest.raises(exc):
        base()[idx]


def test_is_contiguous_edge_cases():
    t = base()
    assert not t[:, 1:2].is_contiguous  # (2, 1, 4) with row stride 12
    assert t[1:2, 1:2].is_contiguous  # (1, 1, 4): one contiguous run
    assert R.zeros((1, 5)).transpose().is_contiguous  # size-1 dims do not matter
    one = Tensor(R, [0.0] * 4, (4, 1), "f64", strides=(1, 99))
    assert one.is_contiguous
    assert not t.transpose(0, 1).is_contiguous


def test_views_share_storage():
    t = base()
    R.fill(t.narrow(2, 1, 2)[1], -1.0)
    assert t.tolist()[1][0] == [100.0, -1.0, -1.0, 103.0]
    assert t.tolist()[0][0] == [0.0, 1.0, 2.0, 3.0]
    R.fill(t.transpose(0, 2)[0], 7.0)  # column 0 of every row
    assert [row[0] for row in t.view(6, 4).tolist()] == [7.0] * 6


def test_chained_views_match_nested_lists():
    t = base((3, 4, 5))
    v = t.permute(2, 0, 1).narrow(0, 1, 3)[:, ::2].transpose(0, 2)
    nested = [[[float(f"{i}{j}{k}") for j in range(4)] for i in range(3)] for k in range(5)]
    sel = [[[nested[1 + k2][i2][j] for j in range(4)] for i2 in range(0, 3, 2)]
           for k2 in range(3)]  # after permute, narrow and the stepped slice: (3, 2, 4)
    want = [[[sel[a][b][c] for a in range(3)] for b in range(2)] for c in range(4)]
    assert v.shape == (4, 2, 3)
    assert v.tolist() == want


def test_tensor_construction_errors():
    with pytest.raises(TypeError, match="unknown dtype"):
        Tensor(R, [], (0,), "f16")
    with pytest.raises(ValueError, match="bad shape"):
        R.zeros((2, -1))
    with pytest.raises(ValueError, match="item"):
        base().item()
    assert "reference" in repr(base())
