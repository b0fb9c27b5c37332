"""An extension object that "serialises" reservations with its own re-entrant lock."""

import threading

from .models import Item, db


class Inventory:
    def __init__(self, app=None):
        self._guard = threading.RLock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app):
        app.extensions["inventory"] = self

    def reserve(self, sku, count):
        with self._guard:  # expect: process-lock
            item = Item.query.filter_by(sku=sku).first()
            if item is None or item.quantity < count:
                return False
            item.quantity -= count
            db.session.commit()
            return True

    def restock(self, sku, count):
        item = Item.query.filter_by(sku=sku).first()
        item.quantity = count
        db.session.commit()


inventory = Inventory()
