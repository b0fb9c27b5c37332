from flask import Blueprint, request

from .email import send_email

bp = Blueprint("auth", __name__)


@bp.post("/reset_password_request")
def reset_password_request():
    send_email("Reset Your Password", "noreply@example.com", [request.form["email"]], "...")
    return "sent"
