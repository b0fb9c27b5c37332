from flask import Blueprint, request

from . import utils
from .utils import FileHelper

bp = Blueprint("tickets", __name__)


@bp.post("/tickets/<int:ticket_id>/attachments")
def attach(ticket_id):
    FileHelper.save_attachment(request.files["file"], ticket_id)
    return {"name": utils.save_file(request.files["file"])}
