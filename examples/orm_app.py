"""A small SQLAlchemy ORM application on terndb: authors, books and tags.

    python examples/orm_app.py [database-directory]

Without an argument it uses a temporary directory.  It shows the dialect's
URL form, declarative models with one-to-many and many-to-many
relationships, eager loading, a savepoint, and reflection of what it made.
"""
from __future__ import annotations

import datetime
import sys
import tempfile

from sqlalchemy import Column, ForeignKey, String, Table, create_engine, func, inspect, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload


class Base(DeclarativeBase):
    pass


book_tags = Table(
    "book_tags", Base.metadata,
    Column("book_id", ForeignKey("books.id"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id"), primary_key=True),
)


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    born: Mapped[datetime.date | None]
    books: Mapped[list["Book"]] = relationship(back_populates="author", order_by="Book.year")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200), index=True)
    year: Mapped[int]
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Author] = relationship(back_populates="books")
    tags: Mapped[list["Tag"]] = relationship(secondary=book_tags, back_populates="books")


class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    books: Mapped[list[Book]] = relationship(secondary=book_tags, back_populates="tags")


def run(directory: str) -> dict:
    """Builds and queries the library; returns a summary (the test checks it)."""
    # terndb:////absolute/dir (four slashes) or terndb:///relative/dir
    engine = create_engine(f"terndb:///{directory}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        sf, classic = Tag(name="sf"), Tag(name="classic")
        le_guin = Author(name="Ursula K. Le Guin", born=datetime.date(1929, 10, 21))
        le_guin.books = [Book(title="The Dispossessed", year=1974, tags=[sf, classic]),
                         Book(title="A Wizard of Earthsea", year=1968, tags=[classic])]
        lem = Author(name="Stanislaw Lem", born=datetime.date(1921, 9, 12),
                     books=[Book(title="Solaris", year=1961, tags=[sf])])
        session.add_all([le_guin, lem])
        session.commit()

        # A savepoint: the inner change is rolled back, the outer transaction goes on.
        with session.begin_nested() as nested:
            session.add(Author(name="Nobody"))
            nested.rollback()
        session.commit()

        authors = session.scalars(select(Author).options(selectinload(Author.books).selectinload(Book.tags))
                                  .order_by(Author.name)).all()
        catalogue = {a.name: [(b.title, sorted(t.name for t in b.tags)) for b in a.books] for a in authors}
        per_tag = dict(session.execute(select(Tag.name, func.count(book_tags.c.book_id))
                                       .join(book_tags).group_by(Tag.name).order_by(Tag.name)).all())
    tables = inspect(engine).get_table_names()
    engine.dispose()
    return {"catalogue": catalogue, "per_tag": per_tag, "tables": tables}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        summary = run(argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            summary = run(f"{tmp}/library")
    for author, books in summary["catalogue"].items():
        print(author)
        for title, tags in books:
            print(f"  {title}  [{', '.join(tags)}]")
    print("books per tag:", summary["per_tag"])
    print("tables:", ", ".join(summary["tables"]))


if __name__ == "__main__":
    main(sys.argv)
