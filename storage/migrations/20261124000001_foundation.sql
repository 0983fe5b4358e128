-- Foundation schema: the nodes of an installation and the users who log in.
-- Events, recordings, grants and the audit log come in later migrations.

-- One row per Panoptes process that ever ran against this database (scale-out: several
-- nodes share one PostgreSQL; cameras will be leased to nodes through it).
CREATE TABLE nodes (
    id            text PRIMARY KEY,
    address       text,
    version       text NOT NULL,
    started_at    timestamptz NOT NULL,
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL,
    -- PHC string (argon2id); never a plain password.
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz,
    CONSTRAINT users_name_shape CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$')
);
-- User names are matched case-insensitively at login.
CREATE UNIQUE INDEX users_name_lower ON users (lower(name));
