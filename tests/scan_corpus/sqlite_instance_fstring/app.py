import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__, instance_relative_config=True)
os.makedirs(app.instance_path, exist_ok=True)
site_db = f"sqlite:///{app.instance_path}/site.db"  # expect: sqlite-local
app.config["SQLALCHEMY_DATABASE_URI"] = site_db
app.config["SQLALCHEMY_BINDS"] = {
    "audit": "sqlite:////var/lib/app/audit.db",  # expect: sqlite-local
}
db = SQLAlchemy(app)
