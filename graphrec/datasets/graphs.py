"""Named real graphs: FastCover / SNAP edge lists under a user root, and embedded ego-Facebook."""

from __future__ import annotations

from pathlib import Path

from graphrec.errors import DatasetNotFoundError
from graphrec.io import EdgeList, read_edgelist

__all__ = ["fastcover_graph", "list_fastcover_graphs", "snap_graph", "ego_facebook"]

_KINDS = ("directed", "undirected")


def _edge_files(folder: Path) -> list[str]:
    """Graph names (file name without ``.txt[.gz]``) of the edge lists in ``folder``."""
    if not folder.is_dir():
        return []
    names = {p.name.removesuffix(".gz").removesuffix(".txt") for p in folder.glob("*.txt*")}
    return sorted(names, key=str.lower)


def list_fastcover_graphs(root: str | Path) -> dict[str, list[str]]:
    """Names of the FastCover graphs under ``root/directed`` and ``root/undirected``.

    Example:
        >>> list_fastcover_graphs("data/fastcover")["directed"][:2]  # doctest: +SKIP
        ['soc-advogato', 'soc-anybeat']
    """
    root = Path(root).expanduser()
    return {kind: _edge_files(root / kind) for kind in _KINDS}


def _find(root: Path, name: str, folders: list[str]) -> tuple[Path | None, list[str]]:
    """First existing ``folder/name[.txt][.gz]``; also the relative candidates tried."""
    stem = name.removesuffix(".gz").removesuffix(".txt")
    tried = [f"{folder}/{stem}.txt{gz}".lstrip("/") for folder in folders for gz in ("", ".gz")]
    for rel in tried:
        if (root / rel).is_file():
            return root / rel, tried
    return None, tried


def fastcover_graph(
    root: str | Path,
    name: str,
    *,
    undirected: bool | None = None,
    self_loops: str = "keep",
    duplicates: str = "keep",
) -> EdgeList:
    """Load a graph of the FastCover benchmark (Ni et al., 2021): SNAP, NetworkRepository, KONECT.

    ``name`` is looked up as ``root/name.txt[.gz]``, then ``root/directed/...`` and
    ``root/undirected/...``; ``name`` may include the folder (``"directed/soc-douban"``).
    Graphs from ``undirected/`` are symmetrised (each pair stored in both directions, a pair
    listed both ways counted once); others stay directed, unless ``undirected`` says otherwise.
    ``self_loops`` and ``duplicates`` are passed to :func:`graphrec.io.read_edgelist`.

    Raises:
        DatasetNotFoundError: no such file; the message lists the paths tried and the graphs
            available under ``root``.
    """
    root = Path(root).expanduser()
    folder, _, base = name.rpartition("/")
    folders = [folder] if folder else ["", *_KINDS]
    path, tried = _find(root, base, folders)
    if path is None:
        available = list_fastcover_graphs(root)
        listing = "; ".join(f"{k}: {', '.join(v)}" for k, v in available.items() if v)
        hint = "Any one of these paths will do. " + (
            f"Available graphs - {listing}" if listing else "No FastCover graphs under root."
        )
        raise DatasetNotFoundError(f"fastcover/{name}", root, tried, hint)
    if undirected is None:
        undirected = path.parent.name == "undirected"
    return read_edgelist(path, undirected=undirected, self_loops=self_loops, duplicates=duplicates)


def snap_graph(
    root: str | Path,
    name: str,
    *,
    undirected: bool = False,
    self_loops: str = "keep",
    duplicates: str = "keep",
) -> EdgeList:
    """Load a SNAP edge list ``root/name.txt[.gz]`` (``#`` comment lines are skipped).

    SNAP files do not say whether a graph is directed; pass ``undirected=True`` for undirected
    datasets (e.g. ``facebook_combined``, ``com-dblp.ungraph``) to store both directions.
    Cite Leskovec & Krevl, "SNAP Datasets", 2014, and the dataset's paper.

    Raises:
        DatasetNotFoundError: the file is missing (the message lists the names tried).
    """
    root = Path(root).expanduser()
    path, tried = _find(root, name, [""])
    if path is None:
        raise DatasetNotFoundError(f"snap/{name}", root, tried, "Any one of these paths will do.")
    return read_edgelist(path, undirected=undirected, self_loops=self_loops, duplicates=duplicates)


def ego_facebook(*, undirected: bool = True) -> EdgeList:
    """SNAP ego-Facebook, embedded in graphrec (no root, nothing to download).

    All ten ego networks combined: 4,039 nodes, 88,234 undirected friendships, ids
    ``0..4038``. With ``undirected=True`` (default) each friendship is stored in both
    directions (176,468 directed edges, what GNN message passing expects); ``False`` keeps the
    file's single ``u < v`` direction.

    Source: J. McAuley and J. Leskovec, "Learning to Discover Social Circles in Ego Networks",
    NIPS 2012; J. Leskovec and A. Krevl, "SNAP Datasets: Stanford Large Network Dataset
    Collection", http://snap.stanford.edu/data, 2014.
    """
    # Relative to this module's file, not ``resources.files("graphrec")``: a folder named
    # ``graphrec`` in the working directory (a clone, seen from its parent) would shadow that.
    path = Path(__file__).resolve().parents[1] / "data" / "facebook_combined.txt.gz"
    graph = read_edgelist(path, undirected=undirected)
    graph.path = "graphrec/data/facebook_combined.txt.gz (embedded)"  # no machine path in output
    return graph
