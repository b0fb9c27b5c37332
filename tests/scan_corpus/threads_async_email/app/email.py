"""E-mail sent from a thread of the web process (the well-known Flask tutorial's helper)."""

from threading import Thread

from flask import current_app
from flask_mail import Mail, Message

mail = Mail()


def send_async_email(app, msg):
    with app.app_context():
        mail.send(msg)


def send_email(subject, sender, recipients, text_body):
    msg = Message(subject, sender=sender, recipients=recipients)
    msg.body = text_body
    Thread(target=send_async_email,  # expect: background-thread
           args=(current_app._get_current_object(), msg)).start()
