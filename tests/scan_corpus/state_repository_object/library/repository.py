"""An in-memory repository, as clean-architecture tutorials write them: one object per
process holds every record."""

import itertools


class BookRepository:
    def __init__(self):
        self._books = {}
        self._ids = itertools.count(1)
        self.events = []

    def add(self, title):
        book_id = next(self._ids)
        self._books[book_id] = {"id": book_id, "title": title}  # expect: module-state
        self.events.append(("added", book_id))  # expect: module-state
        return self._books[book_id]

    def remove(self, book_id):
        self._books.pop(book_id, None)  # expect: module-state

    def all(self):
        return list(self._books.values())


repository = BookRepository()
