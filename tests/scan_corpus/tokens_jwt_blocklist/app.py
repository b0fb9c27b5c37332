"""Flask-JWT-Extended's revoking example as many apps copy it: the blocklist in a set."""

from datetime import timedelta

from flask import Flask, jsonify
from flask_jwt_extended import JWTManager, create_access_token, get_jwt, jwt_required

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = "super-secret"  # noqa: S105 (the example's own)
app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(hours=1)
jwt = JWTManager(app)
revoked = set()


@jwt.token_in_blocklist_loader
def check_if_token_revoked(jwt_header, jwt_payload):
    return jwt_payload["jti"] in revoked


@app.post("/login")
def login():
    return jsonify(access_token=create_access_token(identity="example_user"))


@app.delete("/logout")
@jwt_required()
def logout():
    revoked.add(get_jwt()["jti"])  # expect: token-store
    return jsonify(msg="JWT revoked")
