-- Alerts: an event is an alert when its camera's alert rules (labels, required zones)
-- accept it. Only alerts enter the review queue, reach the alert stream's pulse and hold
-- recordings against retention; every event stays searchable.
ALTER TABLE events ADD COLUMN alert boolean NOT NULL DEFAULT true;

-- The review queue: unreviewed alerts, newest first.
CREATE INDEX events_alert_new_start ON events (start_time DESC, id DESC) WHERE review_state = 'new' AND alert;
