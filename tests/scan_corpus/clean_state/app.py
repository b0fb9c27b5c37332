"""Module-level containers that are not state: constants, a registry filled at start-up,
a CLI command, a local copy in a view, a lookup table read per request."""

import click
from flask import Flask, jsonify

app = Flask(__name__)

PRICES = {"tea": 3, "cake": 4}
PLUGINS = []
CATEGORIES = ("books", "games")


def register(plugin):
    PLUGINS.append(plugin)  # import time / start-up: the same on every instance


register("markdown")


def create_app():
    PLUGINS.append("search")
    return app


@app.cli.command("reset-plugins")
@click.option("--yes", is_flag=True)
def reset_plugins(yes):
    if yes:
        PLUGINS.clear()  # a CLI command, not a request


@app.route("/price/<item>")
def price(item):
    prices = dict(PRICES)  # a copy, local to the request
    prices[item] = prices.get(item, 0)
    PLUGINS_SEEN = []  # a local that shadows nothing shared
    PLUGINS_SEEN.append(item)
    return jsonify(price=prices[item], categories=CATEGORIES, seen=PLUGINS_SEEN)
