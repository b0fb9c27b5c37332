"""Users, products and orders in SQL (SQLAlchemy); the schema is created by the app itself."""

from __future__ import annotations

import datetime as dt
import threading

from flask import Flask, current_app, g
from sqlalchemy import DateTime, ForeignKey, Integer, String, create_engine, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from werkzeug.exceptions import Conflict
from werkzeug.security import generate_password_hash


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    avatar_path: Mapped[str | None] = mapped_column(String(512))


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
    path: Mapped[str] = mapped_column(String(512))


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


# One lock per process: it keeps this process's buyers apart, but another instance holds its
# own lock and reads the same stock, so two instances both sell the last item.
STOCK_LOCK = threading.Lock()


def take_stock(session: Session, items: dict[int, int]) -> None:
    """Take ``items`` (product id -> quantity) from stock, or raise OutOfStock taking none."""
    with STOCK_LOCK:
        # Check, then write the new level: right in one process, a lost update across two.
        products = session.execute(select(Product).where(Product.id.in_(items))
                                   .execution_options(populate_existing=True)).scalars()
        by_id = {p.id: p for p in products}
        for product_id, wanted in sorted(items.items()):
            if by_id[product_id].stock < wanted:
                raise OutOfStock(by_id[product_id], wanted, by_id[product_id].stock)
        for product_id, wanted in sorted(items.items()):
            left = by_id[product_id].stock - wanted
            session.execute(update(Product).where(Product.id == product_id).values(stock=left))
        session.commit()  # under the lock: this process's next buyer reads the new level


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


def init_db(url: str) -> None:
    """Create the tables and the demo data (run once before several instances start)."""
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    seed(engine)
    engine.dispose()


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    # A first version creates its own tables at start-up.
    Base.metadata.create_all(engine)
    seed(engine)
    app.extensions["db_engine"] = engine
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
