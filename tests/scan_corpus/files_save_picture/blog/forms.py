from flask_wtf import FlaskForm
from flask_wtf.file import FileField


class UpdateAccountForm(FlaskForm):
    picture = FileField("Update Profile Picture")
    cover = FileField("Cover")
