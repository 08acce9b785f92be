-- Floor plans (issue 19): one image per unit and floor, and where each device sits on it.
-- Owned by src/devices/floorplans.py. `floor` is the floor's one name (devices.locations.floor_key:
-- '3' above ground, 'B1' below); `label` is the floor as the uploader wrote it. Positions are
-- fractions of the image's width and height, so a redrawn plan of the same size keeps them.
CREATE TABLE floor_plans (
    unit_id      text NOT NULL REFERENCES units(unit_id) ON DELETE CASCADE,
    floor        text NOT NULL,
    label        text NOT NULL,
    content_type text NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg')),
    width        integer NOT NULL CHECK (width > 0),
    height       integer NOT NULL CHECK (height > 0),
    image        bytea NOT NULL,
    sha256       text NOT NULL,
    uploaded_by  text NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_id, floor)
);

CREATE TABLE floor_plan_positions (
    device_id text PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE,
    unit_id   text NOT NULL,
    floor     text NOT NULL,
    x         double precision NOT NULL CHECK (x >= 0 AND x <= 1),
    y         double precision NOT NULL CHECK (y >= 0 AND y <= 1),
    placed_by text NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (unit_id, floor) REFERENCES floor_plans (unit_id, floor) ON DELETE CASCADE
);
CREATE INDEX floor_plan_positions_plan_idx ON floor_plan_positions (unit_id, floor);
