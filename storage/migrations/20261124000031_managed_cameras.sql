-- Cameras added through the API live here; cameras from a configuration file are mirrored.
ALTER TABLE cameras
    ADD COLUMN managed_by text NOT NULL DEFAULT 'config',
    -- The camera's definition in the configuration file's `[[cameras]]` shape, as JSON,
    -- without credentials (user names and passwords are in `credentials`).
    ADD COLUMN definition jsonb,
    -- Per stream name: {"username": …, "password": …}, for cameras added through the API.
    -- Never returned by the API and never logged; database backups hold it, as they hold
    -- the rest of the configuration.
    ADD COLUMN credentials jsonb,
    -- Deleted through the API: the definition and credentials are gone, events and
    -- recordings stay searchable until retention removes them.
    ADD COLUMN retired_at timestamptz,
    ADD CONSTRAINT cameras_managed_by CHECK (managed_by IN ('config', 'api')),
    ADD CONSTRAINT cameras_api_defined CHECK (managed_by = 'config' OR retired_at IS NOT NULL OR definition IS NOT NULL);

ALTER TABLE camera_streams ADD COLUMN has_credentials boolean NOT NULL DEFAULT false;
