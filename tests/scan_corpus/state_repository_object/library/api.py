from flask import Blueprint, jsonify, request

from .repository import repository

bp = Blueprint("books", __name__, url_prefix="/books")


class Page:
    """Built per request: its list is the request's own."""

    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)


@bp.get("/")
def list_books():
    page = Page()
    for book in repository.all():
        page.add(book)
    return jsonify(page.items)


@bp.post("/")
def create_book():
    return jsonify(repository.add(request.json["title"])), 201


@bp.delete("/<int:book_id>")
def delete_book(book_id):
    repository.remove(book_id)
    return "", 204
