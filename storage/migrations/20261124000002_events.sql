-- Events schema: cameras and their streams, detection events with review state,
-- line-crossing counts and user camera grants. See docs/design/schema.md for the
-- reasons behind each index.

-- Trigram indexes for sub-label search (plates, face names). pg_trgm ships with
-- Debian's postgresql package (contrib) and is a trusted extension since PostgreSQL 13,
-- so a database owner without superuser may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per configured camera. The configuration file stays the source of truth; the
-- binary upserts these rows at start and on reload. node_id is the node that owns the
-- camera today (scale-out: ownership moves through this seam).
CREATE TABLE cameras (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    node_id     text REFERENCES nodes (id) ON DELETE SET NULL,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- The same shape as panoptes_core::CameraId.
    CONSTRAINT cameras_id_shape CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$')
);
CREATE INDEX cameras_node ON cameras (node_id);

-- A camera's streams (main, sub, ...). The URL is stored without credentials.
CREATE TABLE camera_streams (
    camera_id     text NOT NULL REFERENCES cameras (id) ON DELETE CASCADE,
    name          text NOT NULL,
    roles         text[] NOT NULL DEFAULT '{}',
    redacted_url  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (camera_id, name),
    CONSTRAINT camera_streams_roles CHECK (roles <@ ARRAY['record', 'live', 'grid', 'detect']::text[])
);

-- Which cameras a non-admin user may see. Admins see every camera without rows here.
CREATE TABLE user_camera_grants (
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    camera_id   text NOT NULL REFERENCES cameras (id) ON DELETE CASCADE,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, camera_id)
);
CREATE INDEX user_camera_grants_camera ON user_camera_grants (camera_id);

-- One row per tracked object (a track start creates it, the track end completes it).
CREATE TABLE events (
    -- UUID v7: time-ordered, made by the writer so that a spooled event keeps its id.
    id               uuid PRIMARY KEY,
    -- Chosen by the producer (node/camera/track/start); a replay from the spool never
    -- duplicates an event.
    idempotency_key  text NOT NULL,
    camera_id        text NOT NULL REFERENCES cameras (id) ON DELETE CASCADE,
    -- The node that detected it. Plain text, not a foreign key: events outlive the
    -- node rows of decommissioned nodes.
    node_id          text,
    label            text NOT NULL,
    -- Plate text or face name, when a second-stage model found one.
    sub_label        text,
    score_max        real NOT NULL,
    score_median     real NOT NULL,
    -- Best snapshot's box, normalised to the frame: {x, y, w, h} in 0..1.
    bbox             real[] NOT NULL,
    -- The track's path: a JSON array of [ms since start, x, y, w, h], decimated by the
    -- producer (at most 512 points).
    bbox_path        jsonb NOT NULL DEFAULT '[]',
    zones            text[] NOT NULL DEFAULT '{}',
    start_time       timestamptz NOT NULL,
    -- NULL while the track is ongoing.
    end_time         timestamptz,
    -- Path of the snapshot JPEG relative to the owning node's snapshot directory; the
    -- image itself is a file, not a bytea (see docs/design/schema.md).
    snapshot_path    text,
    review_state     text NOT NULL DEFAULT 'new',
    reviewed_by      bigint REFERENCES users (id) ON DELETE SET NULL,
    reviewed_at      timestamptz,
    review_note      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_key_unique UNIQUE (idempotency_key),
    CONSTRAINT events_key_shape CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    CONSTRAINT events_label_shape CHECK (label ~ '^[a-z][a-z0-9_]{0,31}$'),
    CONSTRAINT events_sub_label_len CHECK (length(sub_label) <= 100),
    CONSTRAINT events_scores CHECK (score_max BETWEEN 0 AND 1 AND score_median BETWEEN 0 AND 1
                                    AND score_median <= score_max),
    CONSTRAINT events_bbox CHECK (cardinality(bbox) = 4 AND 0 <= ALL (bbox) AND 1 >= ALL (bbox)),
    CONSTRAINT events_bbox_path CHECK (jsonb_typeof(bbox_path) = 'array'),
    CONSTRAINT events_times CHECK (end_time IS NULL OR end_time >= start_time),
    CONSTRAINT events_review_state CHECK (review_state IN ('new', 'acknowledged', 'dismissed')),
    CONSTRAINT events_review_consistent CHECK ((review_state = 'new') = (reviewed_at IS NULL)),
    CONSTRAINT events_review_note_len CHECK (length(review_note) <= 2000)
);

-- Keyset pagination over everything: ORDER BY start_time DESC, id DESC.
CREATE INDEX events_start ON events (start_time DESC, id DESC);
-- One camera (or a few granted cameras) over a time range.
CREATE INDEX events_camera_start ON events (camera_id, start_time DESC, id DESC);
-- One label over a time range.
CREATE INDEX events_label_start ON events (label, start_time DESC, id DESC);
-- The review inbox: unreviewed events, newest first. Small, since most events get reviewed
-- or age out.
CREATE INDEX events_new_start ON events (start_time DESC, id DESC) WHERE review_state = 'new';
-- "Any of these zones".
CREATE INDEX events_zones ON events USING gin (zones);
-- Sub-label substring search (ILIKE '%abc%').
CREATE INDEX events_sub_label_trgm ON events USING gin (sub_label gin_trgm_ops) WHERE sub_label IS NOT NULL;

-- Line-crossing counts per hour. The producer sends the running total of the current
-- hour (not a delta), so an upsert keeping the larger value is idempotent under replay.
CREATE TABLE line_counts (
    camera_id     text NOT NULL REFERENCES cameras (id) ON DELETE CASCADE,
    line_id       text NOT NULL,
    label         text NOT NULL,
    direction     text NOT NULL,
    bucket_start  timestamptz NOT NULL,
    count         bigint NOT NULL,
    node_id       text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (camera_id, line_id, label, direction, bucket_start),
    CONSTRAINT line_counts_direction CHECK (direction IN ('in', 'out')),
    CONSTRAINT line_counts_label_shape CHECK (label ~ '^[a-z][a-z0-9_]{0,31}$'),
    CONSTRAINT line_counts_line_shape CHECK (line_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    CONSTRAINT line_counts_hour CHECK (extract(epoch FROM bucket_start)::bigint % 3600 = 0
                                       AND extract(epoch FROM bucket_start) = trunc(extract(epoch FROM bucket_start))),
    CONSTRAINT line_counts_count CHECK (count >= 0)
);
-- Counts over a range across all cameras.
CREATE INDEX line_counts_bucket ON line_counts (bucket_start);
