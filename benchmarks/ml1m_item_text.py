"""Write the item-text file of the ML-1M SASRec file for ``benchmarks/recommender.py --item-text``.

    python benchmarks/ml1m_item_text.py ../shared/datasets/ml-1m /tmp/ml1m-item-text.tsv

Joins ``sas_to_original_items.txt`` (SASRec item id, MovieLens movie id) with ``movies.dat``
(``id::Title (year)::Genre|Genre``) into ``item_id<TAB>title. Genres: a, b``. The output is
derived from MovieLens and must not be committed (see the data set's README).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def item_text_lines(folder: Path) -> list[str]:
    movies = {}
    for line in (folder / "movies.dat").read_text(encoding="latin-1").splitlines():
        movie_id, title, genres = line.split("::")
        movies[movie_id] = f"{title}. Genres: {', '.join(genres.split('|'))}"
    lines = []
    for line in (folder / "sas_to_original_items.txt").read_text().splitlines():
        item_id, movie_id = line.split()
        if movie_id in movies:
            lines.append(f"{item_id}\t{movies[movie_id]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the ml-1m folder with movies.dat and the id map")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    lines = item_text_lines(args.folder)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} items -> {args.out}")


if __name__ == "__main__":
    main()
