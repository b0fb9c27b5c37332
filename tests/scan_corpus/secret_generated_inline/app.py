"""Keys made at start-up in the ways answers and snippets show."""

import binascii
import os
import random
import string

from cryptography.fernet import Fernet
from flask import Flask

app = Flask(__name__)
app.config["SECRET_KEY"] = "".join(  # expect: secret-key-per-process
    random.choice(string.ascii_letters + string.digits) for _ in range(32))

api = Flask("api")
api.secret_key = binascii.hexlify(os.urandom(24))  # expect: secret-key-per-process

admin = Flask("admin")
admin.config.update(SECRET_KEY=Fernet.generate_key())  # expect: secret-key-per-process
