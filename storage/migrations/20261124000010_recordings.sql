-- Recordings: one row per fragmented-MP4 segment file, gaps between segments, legal holds.
-- See docs/design/recording.md.

-- A segment file under <data_dir>/recordings/<camera>/<YYYY-MM-DD>/<HH>/<stream>-<start>.mp4.
-- 'open' while being written (recovery closes or removes it after a crash), 'closed' once
-- complete, 'deleting' while retention removes the file (finished at the next start if a
-- crash interrupts it).
CREATE TABLE recording_segments (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node_id       text,
    camera_id     text NOT NULL,
    stream        text NOT NULL,
    start_time    timestamptz NOT NULL,
    -- Wall clock: start + media duration (never past the next segment's start).
    end_time      timestamptz,
    -- Media duration from pts deltas, 90 kHz ticks.
    duration_90k  bigint,
    frames        bigint,
    -- Relative to the data directory.
    path          text NOT NULL UNIQUE,
    bytes         bigint,
    sha256        text,
    codec         text NOT NULL CHECK (codec IN ('h264', 'h265')),
    width         integer,
    height        integer,
    state         text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'deleting')),
    close_reason  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT recording_segments_closed_complete CHECK (
        state = 'open' OR (end_time IS NOT NULL AND end_time >= start_time AND duration_90k IS NOT NULL
                           AND bytes IS NOT NULL AND sha256 IS NOT NULL))
);
CREATE INDEX recording_segments_camera_time ON recording_segments (camera_id, stream, start_time);
CREATE INDEX recording_segments_state ON recording_segments (state) WHERE state <> 'closed';

-- A range of a stream with no recording, and why (stall, waiting for a key frame).
CREATE TABLE recording_gaps (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node_id     text,
    camera_id   text NOT NULL,
    stream      text NOT NULL,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL CHECK (end_time >= start_time),
    reason      text NOT NULL
);
CREATE INDEX recording_gaps_camera_time ON recording_gaps (camera_id, stream, start_time);

-- Ranges of a camera that retention must keep until released.
CREATE TABLE legal_holds (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    camera_id    text NOT NULL,
    start_time   timestamptz NOT NULL,
    end_time     timestamptz NOT NULL CHECK (end_time >= start_time),
    reason       text NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz,
    released_by  text
);
CREATE INDEX legal_holds_active ON legal_holds (camera_id, start_time) WHERE released_at IS NULL;
