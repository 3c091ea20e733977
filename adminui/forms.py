"""Dashboard forms generated from a provider operation's settings declaration.

An operation declares its settings (`provider.describe()`: name, kind, label, required, default,
choices, minimum, maximum, help_text). `setting_fields` turns that declaration into form fields:

    string -> text input            text -> textarea          choice -> select
    integer/number -> number input with min/max/step          boolean -> checkbox
    template -> a select of the uploaded templates, plus an "upload a new one" file input

The fields only collect what the operator typed; validating it is the provider's job
(`Operation.clean_settings`, reached through `ingest.selectors.update_slot_if_current`), so the
dashboard and the API accept and refuse exactly the same settings. `SettingsForm.settings()`
hands the values over typed as the declaration says (numbers as numbers, checkboxes as booleans)
and `SettingsForm.show_errors()` puts the provider's per-field messages (SettingsInvalid.errors)
next to their fields.

`SlotForm` is the slot page's configuration form: name, active, provider, operation, the slot's
version (its ETag, so that a concurrent edit is detected) and the operation's settings.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.forms import BoundField
from django.http import HttpRequest, QueryDict
from django.urls import reverse

from ingest import media_service
from ingest.models import SLOT_FLAGS, Slot, TemplateMedia
from ingest.selectors import update_slot_if_current
from jobqueue import files
from photobooth.errors import PhotoboothError
from providers.base import SettingsInvalid
from providers.registry import all_providers

SETTING_PREFIX = "setting-"
UPLOAD_SUFFIX = "-upload"
# The image types a template upload may have (checked again from the bytes on upload).
TEMPLATE_ACCEPT = ",".join(media_service.ACCEPTED_MIMES)

Declaration = Sequence[Mapping[str, Any]]


# --- templates to choose from --------------------------------------------------------------------
@dataclass(frozen=True)
class TemplateOption:
    """An uploaded template as a choice in a template setting's select."""

    id: str
    label: str
    preview_url: str


def template_label(template: TemplateMedia) -> str:
    name = template.original_name or f"template {str(template.id)[:8]}"
    return f"{name} ({template.width}×{template.height})"


def template_preview_url(template_id: Any) -> str:
    """The dashboard's own (session-authenticated) address of a template's file."""
    return reverse("dashboard-template-file", kwargs={"template_id": template_id})


def template_options() -> list[TemplateOption]:
    """The uploaded templates, newest first (the first page of the library: 200)."""
    page = media_service.template_page(page=1, page_size=media_service.MAX_PAGE_SIZE)
    return [
        TemplateOption(
            id=str(template.id),
            label=template_label(template),
            preview_url=template_preview_url(template.id),
        )
        for template in page.results
    ]


def _unlisted_option(template_id: str) -> TemplateOption:
    try:
        key = uuid.UUID(template_id)
    except ValueError:
        return TemplateOption(
            id=template_id, label=f"unknown template {template_id[:40]}", preview_url=""
        )
    return TemplateOption(
        id=str(key), label=f"template {str(key)[:8]}", preview_url=template_preview_url(key)
    )


# --- the declaration -----------------------------------------------------------------------------
def operation_declaration(provider_id: str, operation_id: str) -> Declaration | None:
    """The operation's settings as `provider.describe()` declares them; None if unknown."""
    provider = all_providers().get(provider_id)
    if provider is None:
        return None
    for operation in provider.describe()["operations"]:
        if operation["id"] == operation_id:
            settings: Declaration = operation["settings"]
            return settings
    return None


def _number_text(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _choice_label(value: str) -> str:
    return value.replace("_", " ") if value else "(default)"


def _field_for(setting: Mapping[str, Any], templates: Sequence[TemplateOption]) -> forms.Field:
    """One form field for one declared setting (validation is left to the provider)."""
    kind = setting["kind"]
    required = bool(setting["required"]) and setting["default"] is None
    common: dict[str, Any] = {
        "label": setting["label"],
        "help_text": setting["help_text"],
        "required": False,
    }
    input_attrs: dict[str, Any] = {"required": True} if required else {}
    if kind == "boolean":
        return forms.BooleanField(**common)
    if kind == "text":
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 4, **input_attrs}), **common)
    if kind == "choice":
        choices = [(value, _choice_label(value)) for value in setting["choices"]]
        if setting["default"] is None and "" not in setting["choices"]:
            choices.insert(0, ("", "— choose —" if required else "— none —"))
        return forms.CharField(widget=forms.Select(choices=choices), **common)
    if kind in ("integer", "number"):
        attrs = {
            "step": "1" if kind == "integer" else "any",
            "inputmode": "numeric" if kind == "integer" else "decimal",
            **input_attrs,
        }
        for attr, key in (("min", "minimum"), ("max", "maximum")):
            text = _number_text(setting[key])
            if text is not None:
                attrs[attr] = text
        return forms.CharField(widget=forms.NumberInput(attrs=attrs), **common)
    if kind == "template":
        options = [("", "— none —"), *((t.id, t.label) for t in templates)]
        return forms.CharField(widget=forms.Select(choices=options), **common)
    return forms.CharField(widget=forms.TextInput(attrs=input_attrs), **common)


def setting_fields(
    declaration: Declaration, *, templates: Sequence[TemplateOption]
) -> dict[str, forms.Field]:
    """Form fields for an operation's settings, named `setting-<name>` (template settings also
    get a `setting-<name>-upload` file field)."""
    fields: dict[str, forms.Field] = {}
    for setting in declaration:
        key = SETTING_PREFIX + setting["name"]
        fields[key] = _field_for(setting, templates)
        if setting["kind"] == "template":
            fields[key + UPLOAD_SUFFIX] = forms.FileField(
                required=False,
                label=f"…or upload a new one for “{setting['label']}”",
                help_text="JPEG, PNG or WebP. It is added to the template library and used "
                "here when you save.",
                widget=forms.FileInput(attrs={"accept": TEMPLATE_ACCEPT}),
            )
    return fields


def initial_settings(declaration: Declaration, values: Mapping[str, Any]) -> dict[str, Any]:
    """Initial field values: the given settings, else each setting's default."""
    initial: dict[str, Any] = {}
    for setting in declaration:
        value = values.get(setting["name"], setting["default"])
        if setting["kind"] == "boolean":
            value = bool(value)
        elif value is None:
            value = ""
        initial[SETTING_PREFIX + setting["name"]] = value
    return initial


def posted_settings(declaration: Declaration, data: QueryDict) -> dict[str, Any]:
    """The raw settings values a form rendered for `declaration` posted (by setting name)."""
    values: dict[str, Any] = {}
    for setting in declaration:
        key = SETTING_PREFIX + setting["name"]
        if setting["kind"] == "boolean":
            values[setting["name"]] = key in data
        elif key in data:
            values[setting["name"]] = data[key]
    return values


def _typed(kind: str, value: Any) -> Any:
    """A posted value as the declaration's kind wants it; left as text when it is not one
    (the provider then says what is wrong with it)."""
    if kind == "boolean":
        return bool(value)
    text = "" if value is None else str(value)
    if kind == "text":
        return text.replace("\r\n", "\n")
    if kind in ("integer", "number") and text.strip():
        text = text.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return text
    return text


@dataclass(frozen=True)
class SettingRow:
    """One setting as the page shows it: its field, and for templates the choices and upload."""

    name: str
    kind: str
    required: bool
    field: BoundField
    upload: BoundField | None = None
    options: Sequence[TemplateOption] = ()

    @property
    def selected(self) -> TemplateOption | None:
        value = str(self.field.value() or "")
        return next((option for option in self.options if option.id == value), None)


class SettingsForm(forms.Form):
    """A form for one operation's settings (other fields may be declared by subclasses)."""

    def __init__(
        self,
        *args: Any,
        declaration: Declaration,
        templates: Sequence[TemplateOption] = (),
        **kwargs: Any,
    ):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.declaration = declaration
        self.templates = templates
        self.fields.update(setting_fields(declaration, templates=templates))

    def setting_rows(self) -> list[SettingRow]:
        rows = []
        for setting in self.declaration:
            key = SETTING_PREFIX + setting["name"]
            is_template = setting["kind"] == "template"
            options = list(self.templates) if is_template else []
            current = str(self[key].value() or "") if is_template else ""
            if current and current not in {option.id for option in options}:
                # Bound, yet beyond the listed page of the library: still offered (and kept).
                options.insert(0, _unlisted_option(current))
            rows.append(
                SettingRow(
                    name=setting["name"],
                    kind=setting["kind"],
                    required=bool(setting["required"]) and setting["default"] is None,
                    field=self[key],
                    upload=self[key + UPLOAD_SUFFIX] if is_template else None,
                    options=options,
                )
            )
        return rows

    def settings(self) -> dict[str, Any]:
        """The posted settings, typed per the declaration (call after is_valid())."""
        return {
            setting["name"]: _typed(
                setting["kind"], self.cleaned_data.get(SETTING_PREFIX + setting["name"])
            )
            for setting in self.declaration
        }

    def uploads(self) -> dict[str, UploadedFile]:
        """New template files posted for template settings, by setting name."""
        found: dict[str, UploadedFile] = {}
        for setting in self.declaration:
            if setting["kind"] != "template":
                continue
            upload = self.cleaned_data.get(SETTING_PREFIX + setting["name"] + UPLOAD_SUFFIX)
            if upload:
                found[setting["name"]] = upload
        return found

    # Errors outside the settings, by the name the services use for them.
    OTHER_ERROR_FIELDS: Mapping[str, str] = {}

    def show_errors(self, errors: Mapping[str, Sequence[str]]) -> None:
        """Put per-field messages (SettingsInvalid.errors) next to their fields."""
        for name, messages in errors.items():
            key = SETTING_PREFIX + name
            if key not in self.fields:
                key = self.OTHER_ERROR_FIELDS.get(name, "")
            for message in messages:
                if key:
                    self.add_error(key, message)
                else:
                    self.add_error(None, f"{name}: {message}")


# --- the slot form -------------------------------------------------------------------------------
class SlotForm(SettingsForm):
    """A slot's configuration, rendered for one provider and operation."""

    name = forms.CharField(label="Name", max_length=Slot._meta.get_field("name").max_length)
    is_active = forms.BooleanField(
        label="Active: booths may send photos to this slot", required=False
    )
    qr_stamp = forms.BooleanField(
        label="Print a QR code linking to the guest's photo page on each result",
        required=False,
    )
    one_at_a_time = forms.BooleanField(
        label="One photo at a time: refuse a new photo (429) while one is being processed",
        required=False,
    )
    provider = forms.ChoiceField(label="Provider")
    operation = forms.ChoiceField(label="Operation")
    # The version the form was rendered from, and for which provider and operation.
    etag = forms.CharField(widget=forms.HiddenInput, required=False)
    rendered_provider = forms.CharField(widget=forms.HiddenInput, required=False)
    rendered_operation = forms.CharField(widget=forms.HiddenInput, required=False)

    OTHER_ERROR_FIELDS = {"provider_id": "provider", "operation_id": "operation", "name": "name"}

    def __init__(
        self,
        *args: Any,
        provider_id: str,
        operation_id: str,
        templates: Sequence[TemplateOption] = (),
        **kwargs: Any,
    ):
        super().__init__(
            *args,
            declaration=operation_declaration(provider_id, operation_id) or (),
            templates=templates,
            **kwargs,
        )
        self.provider_id, self.operation_id = provider_id, operation_id
        providers = all_providers()
        provider_field = self.fields["provider"]
        operation_field = self.fields["operation"]
        assert isinstance(provider_field, forms.ChoiceField)
        assert isinstance(operation_field, forms.ChoiceField)
        provider_field.choices = [(p.id, p.label) for p in providers.values()]
        provider = providers.get(provider_id)
        operation_field.choices = (
            [(op.id, op.label) for op in provider.operations.values()] if provider else []
        )
        self.provider_label = provider.label if provider else provider_id
        operation = provider.operations.get(operation_id) if provider else None
        self.operation_label = operation.label if operation else operation_id


def provider_and_operation(provider_id: str, operation_id: str) -> tuple[str, str]:
    """An installed provider and one of its operations: the asked ones when they exist, else
    the provider's first operation (or the first provider's)."""
    providers = all_providers()
    provider = providers.get(provider_id) or next(iter(providers.values()))
    if operation_id not in provider.operations:
        operation_id = next(iter(provider.operations))
    return provider.id, operation_id


def form_for_slot(slot: Slot, *, etag: str, templates: Sequence[TemplateOption] = ()) -> SlotForm:
    """The form showing a slot's saved configuration."""
    provider_id, operation_id = provider_and_operation(slot.provider_id, slot.operation_id)
    same = (provider_id, operation_id) == (slot.provider_id, slot.operation_id)
    declaration = operation_declaration(provider_id, operation_id) or ()
    return SlotForm(
        provider_id=provider_id,
        operation_id=operation_id,
        templates=templates,
        initial={
            "name": slot.name,
            "is_active": slot.is_active,
            **{flag: getattr(slot, flag) for flag in SLOT_FLAGS},
            "provider": provider_id,
            "operation": operation_id,
            "etag": etag,
            "rendered_provider": provider_id,
            "rendered_operation": operation_id,
            **initial_settings(declaration, slot.settings_json if same else {}),
        },
    )


def form_for_new_choice(data: QueryDict, *, templates: Sequence[TemplateOption] = ()) -> SlotForm:
    """The form again, for the provider and operation just chosen, nothing saved.

    The name, the active box and the version stay as posted; settings the previous operation
    also had keep their posted values, the others start from their defaults.
    """
    provider_id, operation_id = provider_and_operation(
        data.get("provider", ""), data.get("operation", "")
    )
    previous = (
        operation_declaration(data.get("rendered_provider", ""), data.get("rendered_operation", ""))
        or ()
    )
    declaration = operation_declaration(provider_id, operation_id) or ()
    return SlotForm(
        provider_id=provider_id,
        operation_id=operation_id,
        templates=templates,
        initial={
            "name": data.get("name", ""),
            "is_active": "is_active" in data,
            **{flag: flag in data for flag in SLOT_FLAGS},
            "provider": provider_id,
            "operation": operation_id,
            "etag": data.get("etag", ""),
            "rendered_provider": provider_id,
            "rendered_operation": operation_id,
            **initial_settings(declaration, posted_settings(previous, data)),
        },
    )


def choice_changed(data: QueryDict) -> bool:
    """Whether the posted provider/operation differ from the ones the form was rendered for."""
    return (data.get("provider"), data.get("operation")) != (
        data.get("rendered_provider"),
        data.get("rendered_operation"),
    )


def save_slot_form(
    form: SlotForm, *, slot_id: str, actor: str, request: HttpRequest | None = None
) -> Slot:
    """Save a valid SlotForm through `update_slot_if_current` (version check, validation, audit).

    New template files are uploaded to the library first and used for their settings, in the
    same transaction: when the slot is not saved (SettingsInvalid, Conflict, ...) they are not
    kept either. An upload the library refuses is a SettingsInvalid error on its setting.
    """
    data = form.cleaned_data
    settings = form.settings()
    stored: list[str] = []
    try:
        with transaction.atomic():
            for name, upload in form.uploads().items():
                try:
                    template = media_service.upload_template(
                        media_service.Upload(
                            stream=upload, size=int(upload.size or 0), name=upload.name or ""
                        ),
                        actor=actor,
                        request=request,
                    )
                except PhotoboothError as refused:
                    raise SettingsInvalid({name: [refused.message]}) from refused
                stored.append(template.path)
                settings[name] = str(template.id)
            return update_slot_if_current(
                slot_id=slot_id,
                if_match=data.get("etag") or None,
                updated_at=None,
                provider_id=data["provider"],
                operation_id=data["operation"],
                settings=settings,
                is_active=bool(data.get("is_active")),
                flags={flag: bool(data.get(flag)) for flag in SLOT_FLAGS},
                name=data["name"],
                actor=actor,
                request=request,
            )
    except BaseException:
        for path in stored:
            files.delete_quietly(path)
        raise
