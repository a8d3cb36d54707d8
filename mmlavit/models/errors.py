"""The errors LaViT raises for a wrong option or a wrong input; the message names the option and the fix."""


class LaViTConfigError(ValueError):
    """A LaViT option (``model.backbone.*``) with a value or a key LaViT does not accept."""


class LaViTInputError(ValueError):
    """An input LaViT cannot run on: wrong dimensions, an empty batch, an image smaller than 32 pixels."""
