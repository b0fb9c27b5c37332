"""Users, products and orders in SQL (SQLAlchemy); the schema is managed by alembic."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from flask import Flask, current_app, g
from sqlalchemy import DateTime, ForeignKey, Integer, String, create_engine, inspect, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from werkzeug.exceptions import Conflict
from werkzeug.security import generate_password_hash

# The shop's alembic history (a script folder, run by path: no import, so no cycle with it), and
# the revision whose schema the before-app made for itself.
MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    avatar_key: Mapped[str | None] = mapped_column(String(512))


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(String(500))
    price_cents: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer, server_default="0")  # how many are left


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    total_cents: Mapped[int] = mapped_column(Integer)
    confirmation_sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class OrderItem(Base):
    __tablename__ = "order_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    price_cents: Mapped[int] = mapped_column(Integer)


class File(Base):
    __tablename__ = "files"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(512))


PRODUCTS = [  # name, description, price in cents, stock
    ("Espresso cup", "A thick-walled cup that keeps a double warm.", 1200, 500),
    ("Pour-over kettle", "Gooseneck spout, 1 litre.", 4500, 500),
    ("Hand grinder", "Ceramic burrs, 30 settings.", 6900, 50),
    ("Filter papers", "Pack of 100, unbleached.", 600, 1000),
    ("Bean tin", "Airtight, holds 250 g.", 1800, 200),
    ("Barista apron", "Waxed canvas with leather straps.", 3900, 3),
]
USERS = [("alice", "wonderland"), ("bob", "builder")]


class OutOfStock(Conflict):
    """An order asks for more of a product than is left: it is refused whole (409)."""

    def __init__(self, product: Product, wanted: int, left: int) -> None:
        # For a client that asked for JSON: which product, how many asked, how many left.
        self.details = {"product_id": product.id, "requested": wanted, "available": max(left, 0)}
        short = (f"{product.name} is sold out" if left <= 0
                 else f"only {left} of {product.name} left")
        super().__init__(f"Not enough stock: {short} and your cart asks for {wanted}; "
                         "your order was not placed and nothing was charged: remove it from "
                         "your cart (or add fewer) and check out again.")


def take_stock(session: Session, items: dict[int, int]) -> None:
    """Take ``items`` (product id -> quantity) from stock, or raise OutOfStock taking none."""
    # One conditional UPDATE per product, in the order's transaction: the database checks and
    # takes at once (UPDATE products SET stock = stock - :q WHERE id = :id AND stock >= :q), so
    # no instance can sell what another just sold. Product order: no two orders deadlock.
    for product_id, wanted in sorted(items.items()):
        taken = session.execute(
            update(Product)
            .where(Product.id == product_id, Product.stock >= wanted)
            .values(stock=Product.stock - wanted)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:
            session.rollback()  # the products already taken for this order go back
            product = session.get(Product, product_id, populate_existing=True)
            raise OutOfStock(product, wanted, product.stock)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets a busy timeout so two instances can share the file."""
    args = {"timeout": 15, "check_same_thread": False} if url.startswith("sqlite") else {}
    return create_engine(url, connect_args=args, pool_pre_ping=True)


def seed(engine: Engine) -> None:
    """Add the demo users and products when the tables are empty."""
    with Session(engine) as s, s.begin():
        if s.scalar(select(User.id).limit(1)) is None:
            s.add_all(User(username=u, password_hash=generate_password_hash(p)) for u, p in USERS)
        if s.scalar(select(Product.id).limit(1)) is None:
            s.add_all(Product(name=n, description=d, price_cents=c, stock=k)
                      for n, d, c, k in PRODUCTS)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with alembic, then add the demo data if missing.

    Run once before the instances start (never by each instance: two would race). A database
    the before-app created without alembic is stamped at the baseline first, not recreated.
    (``migrate db upgrade`` does the same for any app; the shop needs no migrate to start.)
    """
    from alembic import command
    from alembic.config import Config

    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    if tables and "alembic_version" not in tables:
        command.stamp(config, BASELINE)
    command.upgrade(config, revision)
    engine = make_engine(url)
    seed(engine)
    engine.dispose()


def init_app(app: Flask) -> None:
    app.extensions["db_engine"] = make_engine(app.config["DATABASE_URL"])
    app.teardown_appcontext(close_db)


def get_db() -> Session:
    """The request's database session."""
    if "db" not in g:
        g.db = Session(current_app.extensions["db_engine"], expire_on_commit=False)
    return g.db


def close_db(exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()
