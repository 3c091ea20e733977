"""What prompt-driven image models (Gemini, OpenAI) share: their three operations, the default
identity prompt, and how the prompt names each image's role."""

from __future__ import annotations

from providers.base import Operation, SettingField

DEFAULT_IDENTITY_PROMPT = (
    "Put the face of the guest in the first image onto the person in the second image. Keep the "
    "second image's pose, body, clothing, lighting, background and style, keep the guest "
    "recognizable, and make the result look natural."
)
# What each template is, as the prompt describes it to the model.
TEMPLATE_ROLES = {
    "reference_media_id": "a reference image",
    "style_media_id": "the style reference",
    "face_media_id": "the scene whose person receives the guest's face",
}
ORDINALS = ("first", "second", "third", "fourth", "fifth")


def image_operations(
    common_fields: tuple[SettingField, ...], *, style_prompt: str
) -> dict[str, Operation]:
    """image_edit, style_transfer and identity_transfer, each followed by `common_fields`."""
    return {
        "image_edit": Operation(
            id="image_edit",
            label="Edit the photo with a prompt",
            fields=(
                SettingField(
                    name="prompt",
                    kind="text",
                    label="Prompt",
                    required=True,
                    help_text="What to do with the guest's photo.",
                ),
                SettingField(
                    name="reference_media_id",
                    kind="template",
                    label="Reference image (optional)",
                    help_text="Sent after the photo; the prompt may refer to it as the "
                    "second image.",
                ),
                *common_fields,
            ),
        ),
        "style_transfer": Operation(
            id="style_transfer",
            label="Style transfer",
            fields=(
                SettingField(
                    name="style_media_id", kind="template", label="Style reference", required=True
                ),
                SettingField(
                    name="prompt",
                    kind="text",
                    label="Prompt",
                    default=style_prompt,
                    help_text="The guest's photo is the first image, the style reference the "
                    "second.",
                ),
                *common_fields,
            ),
        ),
        "identity_transfer": Operation(
            id="identity_transfer",
            label="Face (identity) transfer",
            fields=(
                SettingField(
                    name="face_media_id",
                    kind="template",
                    label="Scene template",
                    required=True,
                    help_text="A scene (costume, poster...) whose person gets the guest's face.",
                ),
                SettingField(
                    name="prompt",
                    kind="text",
                    label="Prompt",
                    default=DEFAULT_IDENTITY_PROMPT,
                    help_text="The guest's photo is the first image, the scene the second.",
                ),
                *common_fields,
            ),
        ),
    }


def prompt_text(prompt: str, roles: list[str]) -> str:
    """The operator's prompt, followed (when several images are sent) by what each one is."""
    if len(roles) < 2:
        return prompt
    described = "; ".join(
        f"the {ORDINALS[index] if index < len(ORDINALS) else f'#{index + 1}'} image is {role}"
        for index, role in enumerate(roles)
    )
    return f"{prompt.rstrip()}\n\n{described[0].upper()}{described[1:]}."
