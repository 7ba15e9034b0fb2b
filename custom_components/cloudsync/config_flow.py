"""Config flow for cloudsync: one config entry per MQTT broker."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from homeassistant.components.file_upload import process_uploaded_file
from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.const import CONF_PASSWORD, CONF_USERNAME
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.selector import (
    BooleanSelector,
    DurationSelector,
    DurationSelectorConfig,
    FileSelector,
    FileSelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import voluptuous as vol

from .client import (
    CertificateError,
    CloudSyncError,
    OverflowPolicy,
    Protocol,
    build_ssl_context,
    certificate_to_pem,
    new_client_id,
    parse_broker_url,
    private_key_to_pem,
)
from .const import (
    CONF_ALLOW_LOCAL_UNAUTHENTICATED,
    CONF_APP_ISOLATION,
    CONF_CA_CERT,
    CONF_CLIENT_CERT,
    CONF_CLIENT_ID,
    CONF_CLIENT_KEY,
    CONF_DRAIN_RATE,
    CONF_KEEPALIVE,
    CONF_KEY_PASSWORD,
    CONF_MAX_AGE,
    CONF_MAX_MESSAGES,
    CONF_MAX_SIZE,
    CONF_OUTBOX,
    CONF_OVERFLOW,
    CONF_PROTOCOL,
    CONF_QOS,
    CONF_RETAIN,
    CONF_STATE_INTERVAL,
    CONF_TOPIC_SENSORS,
    CONF_URL,
    CONF_VERIFY_HOSTNAME,
    DEFAULT_DRAIN_RATE,
    DEFAULT_KEEPALIVE,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_MESSAGES,
    DEFAULT_MAX_SIZE,
    DEFAULT_OVERFLOW,
    DEFAULT_QOS,
    DEFAULT_RETAIN,
    DEFAULT_STATE_INTERVAL,
    DEFAULT_TOPIC_SENSORS,
    DOMAIN,
    LOGGER,
)
from .entry_data import broker_config
from .probe import async_probe_broker, form_error

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_PASSWORD = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_CERT_FILE = FileSelector(FileSelectorConfig(accept=".pem,.crt,.cer,.der,.key"))

USER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_URL): TextSelector(),
        vol.Optional(CONF_USERNAME): TextSelector(
            TextSelectorConfig(autocomplete="username")
        ),
        vol.Optional(CONF_PASSWORD): _PASSWORD,
        vol.Optional(CONF_CLIENT_ID): TextSelector(),
        vol.Required(CONF_PROTOCOL, default=Protocol.MQTTV311.value): SelectSelector(
            SelectSelectorConfig(
                options=[protocol.value for protocol in Protocol],
                translation_key=CONF_PROTOCOL,
            )
        ),
    }
)
TLS_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_CA_CERT): _CERT_FILE,
        vol.Optional(CONF_CLIENT_CERT): _CERT_FILE,
        vol.Optional(CONF_CLIENT_KEY): _CERT_FILE,
        vol.Optional(CONF_KEY_PASSWORD): _PASSWORD,
        vol.Required(CONF_VERIFY_HOSTNAME, default=True): BooleanSelector(),
    }
)
REAUTH_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_USERNAME): TextSelector(
            TextSelectorConfig(autocomplete="username")
        ),
        vol.Optional(CONF_PASSWORD): _PASSWORD,
    }
)


def _box(
    minimum: float, maximum: float, unit: str | None = None, step: float = 1
) -> vol.All:
    """Return a number box; whole steps are stored as int, fractional ones as float."""
    config = NumberSelectorConfig(
        min=minimum, max=maximum, step=step, mode=NumberSelectorMode.BOX
    )
    if unit:
        config["unit_of_measurement"] = unit
    return vol.All(NumberSelector(config), vol.Coerce(int if step == 1 else float))


def _count(maximum: int, unit: str | None = None) -> vol.All:
    """Return a whole-number box from 1 to ``maximum``."""
    return _box(1, maximum, unit)


OUTBOX_FIELDS: dict[vol.Marker, Any] = {
    vol.Required(CONF_MAX_MESSAGES, default=DEFAULT_MAX_MESSAGES): _count(100_000_000),
    vol.Required(CONF_MAX_SIZE, default=DEFAULT_MAX_SIZE): _count(1_048_576, "MiB"),
    vol.Required(CONF_MAX_AGE, default=DEFAULT_MAX_AGE): DurationSelector(
        DurationSelectorConfig(enable_day=True, allow_negative=False)
    ),
    vol.Required(CONF_OVERFLOW, default=DEFAULT_OVERFLOW): SelectSelector(
        SelectSelectorConfig(
            options=[policy.value for policy in OverflowPolicy],
            mode=SelectSelectorMode.DROPDOWN,
            translation_key=CONF_OVERFLOW,
        )
    ),
    vol.Required(CONF_DRAIN_RATE, default=DEFAULT_DRAIN_RATE): _count(
        1_000_000, "messages/s"
    ),
}
OPTIONS_FIELDS: dict[vol.Marker, Any] = {
    vol.Required(CONF_QOS, default=str(DEFAULT_QOS)): vol.All(
        SelectSelector(
            SelectSelectorConfig(
                options=["0", "1", "2"],
                mode=SelectSelectorMode.DROPDOWN,
                translation_key=CONF_QOS,
            )
        ),
        vol.Coerce(int),
    ),
    vol.Required(CONF_RETAIN, default=DEFAULT_RETAIN): BooleanSelector(),
    vol.Required(CONF_KEEPALIVE, default=DEFAULT_KEEPALIVE): _box(10, 3600, "s"),
    vol.Required(CONF_STATE_INTERVAL, default=DEFAULT_STATE_INTERVAL): _box(
        0, 3600, "s", step=0.1
    ),
    vol.Required(CONF_TOPIC_SENSORS, default=DEFAULT_TOPIC_SENSORS): BooleanSelector(),
    vol.Required(CONF_ALLOW_LOCAL_UNAUTHENTICATED, default=False): BooleanSelector(),
    vol.Required(CONF_APP_ISOLATION, default=False): BooleanSelector(),
}


def options_schema() -> vol.Schema:
    """Return a fresh options schema (HA writes suggested values into sections)."""
    outbox = section(vol.Schema(OUTBOX_FIELDS), {"collapsed": True})
    return vol.Schema({**OPTIONS_FIELDS, vol.Required(CONF_OUTBOX): outbox})


_STORED_TLS = (CONF_CA_CERT, CONF_CLIENT_CERT, CONF_CLIENT_KEY, CONF_KEY_PASSWORD)


def _credentials(user_input: Mapping[str, Any]) -> dict[str, str]:
    """Return the username and password the form was given, leaving out empty ones."""
    return {
        key: user_input[key]
        for key in (CONF_USERNAME, CONF_PASSWORD)
        if user_input.get(key)
    }


def _connection_data(url: str, user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the entry data of the user form; generate a client id when none is given."""
    client_id = user_input.get(CONF_CLIENT_ID, "").strip()
    return {
        CONF_URL: url,
        CONF_CLIENT_ID: client_id or new_client_id(),
        CONF_PROTOCOL: user_input[CONF_PROTOCOL],
        **_credentials(user_input),
    }


def _title(url: str) -> str:
    """Return the entry title `host:port` for a normalized broker URL."""
    return url.partition("://")[2]


def _read_upload(
    hass: HomeAssistant, file_id: str, to_pem: Callable[[bytes], str]
) -> str:
    """Read an uploaded file and convert it to PEM text (blocking)."""
    with process_uploaded_file(hass, file_id) as path:
        return to_pem(path.read_bytes())


async def _async_read_uploads(
    hass: HomeAssistant, user_input: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    """Return the uploaded certificates and key as PEM, and the fields that failed."""
    password = user_input.get(CONF_KEY_PASSWORD) or None
    uploads: dict[str, tuple[str, Callable[[bytes], str]]] = {
        CONF_CA_CERT: ("invalid_ca_cert", certificate_to_pem),
        CONF_CLIENT_CERT: ("invalid_client_cert", certificate_to_pem),
        CONF_CLIENT_KEY: (
            "invalid_client_key",
            partial(private_key_to_pem, password=password),
        ),
    }
    pems: dict[str, str] = {}
    errors: dict[str, str] = {}
    for key, (error, to_pem) in uploads.items():
        if file_id := user_input.get(key):
            try:
                pems[key] = await hass.async_add_executor_job(
                    _read_upload, hass, file_id, to_pem
                )
            except (CertificateError, ValueError):
                errors[key] = error
    if CONF_CLIENT_KEY in pems and password:
        pems[CONF_KEY_PASSWORD] = password
    return pems, errors


async def _async_tls_data(
    hass: HomeAssistant, user_input: Mapping[str, Any], stored: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the TLS entry data (uploads replace what is stored) and the form errors."""
    pems, errors = await _async_read_uploads(hass, user_input)
    data: dict[str, Any] = {k: stored[k] for k in _STORED_TLS if stored.get(k)}
    if CONF_CLIENT_KEY in pems:
        data.pop(CONF_KEY_PASSWORD, None)  # the stored password was the replaced key's
    data |= pems
    data[CONF_VERIFY_HOSTNAME] = user_input[CONF_VERIFY_HOSTNAME]
    if not errors and (CONF_CLIENT_CERT in data) != (CONF_CLIENT_KEY in data):
        errors["base"] = "client_cert_and_key"
    return data, errors


async def _async_validate(hass: HomeAssistant, data: Mapping[str, Any]) -> str | None:
    """Connect to the broker the entry data describes; return a form error or None."""
    config = broker_config(data)
    if config.tls:
        try:
            await hass.async_add_executor_job(build_ssl_context, config)
        except CertificateError:
            # Every file was parsed already: what is left is a key that is not the cert's.
            return "client_key_mismatch"
    try:
        await async_probe_broker(hass, config)
    except CloudSyncError as err:
        return form_error(err)
    except Exception:  # noqa: BLE001 - any failure must end up as a form error
        LOGGER.exception("Unexpected error while connecting to %s", config.url)
        return "unknown"
    return None


class CloudSyncConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up, reconfigure and re-authenticate a connection to one MQTT broker."""

    VERSION = 1

    def __init__(self) -> None:
        """Start with no connection data."""
        self._data: dict[str, Any] = {}

    @staticmethod
    @callback
    def async_get_options_flow(
        config_entry: ConfigEntry,  # noqa: ARG004 - HA's signature
    ) -> CloudSyncOptionsFlow:
        """Return the options flow."""
        return CloudSyncOptionsFlow()

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the broker URL and credentials."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                url = str(parse_broker_url(user_input[CONF_URL]))
            except ValueError:
                errors[CONF_URL] = "invalid_url"
            else:
                await self.async_set_unique_id(url)
                self._abort_if_unique_id_configured()
                self._data = _connection_data(url, user_input)
                return await self._async_connect("user", user_input)
        return self._async_show_user_form("user", user_input, errors)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the broker URL, credentials, client id or protocol."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                url = str(parse_broker_url(user_input[CONF_URL]))
            except ValueError:
                errors[CONF_URL] = "invalid_url"
            else:
                if url != entry.unique_id:
                    await self.async_set_unique_id(url)
                    self._abort_if_unique_id_configured()
                self._data = _connection_data(url, user_input)
                self._keep_password(entry.data)
                return await self._async_connect("reconfigure", user_input)
        suggested = {k: v for k, v in entry.data.items() if k != CONF_PASSWORD}
        return self._async_show_user_form(
            "reconfigure", user_input or suggested, errors
        )

    async def async_step_tls(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the certificates of a TLS broker."""
        return await self._async_tls_step("tls", user_input, {})

    async def async_step_reconfigure_tls(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for new certificates; the stored ones stay when nothing is uploaded."""
        stored = self._get_reconfigure_entry().data
        return await self._async_tls_step("reconfigure_tls", user_input, stored)

    async def async_step_reauth(
        self,
        entry_data: Mapping[str, Any],  # noqa: ARG002 - HA's signature
    ) -> ConfigFlowResult:
        """Start re-authentication after the broker refused the credentials."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for new credentials and check them against the broker."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {
                k: v
                for k, v in entry.data.items()
                if k not in (CONF_USERNAME, CONF_PASSWORD)
            } | _credentials(user_input)
            if not (error := await _async_validate(self.hass, data)):
                # Reloads too: an entry whose setup failed has no update listener.
                return self.async_update_reload_and_abort(entry, data=data)
            errors["base"] = error
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=self.add_suggested_values_to_schema(
                REAUTH_SCHEMA, {CONF_USERNAME: entry.data.get(CONF_USERNAME)}
            ),
            description_placeholders={CONF_URL: entry.data[CONF_URL]},
            errors=errors,
        )

    def _keep_password(self, stored: Mapping[str, Any]) -> None:
        """Keep the stored password when the form left it empty for the same user."""
        same_user = self._data.get(CONF_USERNAME) == stored.get(CONF_USERNAME)
        if same_user and CONF_PASSWORD not in self._data and CONF_PASSWORD in stored:
            self._data[CONF_PASSWORD] = stored[CONF_PASSWORD]

    async def _async_connect(
        self, step_id: str, user_input: dict[str, Any]
    ) -> ConfigFlowResult:
        """Go on to the TLS step, or probe the plain broker and finish."""
        if parse_broker_url(self._data[CONF_URL]).tls:
            return await (
                self.async_step_reconfigure_tls()
                if self.source == SOURCE_RECONFIGURE
                else self.async_step_tls()
            )
        if error := await _async_validate(self.hass, self._data):
            return self._async_show_user_form(step_id, user_input, {"base": error})
        return self._async_finish(self._data)

    async def _async_tls_step(
        self, step_id: str, user_input: dict[str, Any] | None, stored: Mapping[str, Any]
    ) -> ConfigFlowResult:
        """Read the uploaded certificates, probe the broker and finish."""
        errors: dict[str, str] = {}
        if user_input is not None:
            tls_data, errors = await _async_tls_data(self.hass, user_input, stored)
            if not errors:
                data = self._data | tls_data
                if not (error := await _async_validate(self.hass, data)):
                    return self._async_finish(data)
                errors["base"] = error
        suggested = {CONF_VERIFY_HOSTNAME: stored.get(CONF_VERIFY_HOSTNAME, True)}
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(TLS_SCHEMA, suggested),
            description_placeholders={CONF_URL: self._data[CONF_URL]},
            errors=errors,
        )

    @callback
    def _async_show_user_form(
        self, step_id: str, suggested: Mapping[str, Any] | None, errors: dict[str, str]
    ) -> ConfigFlowResult:
        """Show the URL and credentials form, keeping what was entered."""
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(
                USER_SCHEMA,
                {k: v for k, v in (suggested or {}).items() if k != CONF_PASSWORD},
            ),
            errors=errors,
        )

    @callback
    def _async_finish(self, data: dict[str, Any]) -> ConfigFlowResult:
        """Create the entry, or update the one being reconfigured."""
        url = data[CONF_URL]
        if self.source != SOURCE_RECONFIGURE:
            # New brokers isolate apps; older entries keep their behaviour.
            return self.async_create_entry(
                title=_title(url), data=data, options={CONF_APP_ISOLATION: True}
            )
        self.hass.config_entries.async_update_entry(
            self._get_reconfigure_entry(), title=_title(url), unique_id=url, data=data
        )
        return self.async_abort(reason="reconfigure_successful")


class CloudSyncOptionsFlow(OptionsFlow):
    """Default QoS, retain flag, keepalive and the outbox caps of a broker."""

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show and store the options."""
        errors: dict[str, str] = {}
        if user_input is not None:
            max_age = cv.time_period_dict(user_input[CONF_OUTBOX][CONF_MAX_AGE])
            if max_age.total_seconds() > 0:
                return self.async_create_entry(data=user_input)
            errors["base"] = "invalid_max_age"
        options = user_input or self.config_entry.options
        suggested = {
            **options,
            CONF_QOS: str(options.get(CONF_QOS, DEFAULT_QOS)),
            CONF_OUTBOX: options.get(CONF_OUTBOX, {}),
        }
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                options_schema(), suggested
            ),
            errors=errors,
        )
