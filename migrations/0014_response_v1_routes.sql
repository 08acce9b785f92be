-- The v1 routes keep working on v2 responders (CONTRACT §9): escalation contacts
-- (`region_contacts`, POST/DELETE /api/v1/escalation-contacts) and unit contacts with a
-- `webhook` (units.contacts) are mirrored, whoever writes them, into responders with a
-- `v1-webhook-*` webhook channel, named as migrations/0010_response_loop.sql named them.

-- A deleted channel keeps its row for the history of what it carried (configuration emptied).
ALTER TABLE channels ADD COLUMN deleted_at timestamptz;

CREATE FUNCTION mx_v1_webhook_channel(url text, actor text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    channel text := 'v1-webhook-' || substr(md5(url), 1, 12);
BEGIN
    INSERT INTO channels (name, type, config, updated_by)
    VALUES (channel, 'webhook', jsonb_build_object('url', url, 'secret', ''), actor)
    ON CONFLICT (name) DO UPDATE SET config = EXCLUDED.config, deleted_at = NULL, updated_at = now()
     WHERE channels.deleted_at IS NOT NULL;
    RETURN channel;
END $$;

-- A responder gone: deleted (its rows kept for history) and its tokens revoked.
CREATE FUNCTION mx_retire_responder(id text) RETURNS void LANGUAGE sql AS $$
    UPDATE responders SET deleted_at = now(), updated_at = now() WHERE responder_id = id AND deleted_at IS NULL;
    UPDATE response_tokens SET revoked_at = now() WHERE responder_id = id AND revoked_at IS NULL;
$$;

CREATE FUNCTION mx_v1_escalation_contact_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM mx_retire_responder('v1-contact-' || substr(md5(OLD.region || '|' || OLD.level || '|' || OLD.name), 1, 16));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO responders (responder_id, name, role, channels, regions, origin, updated_by)
        VALUES ('v1-contact-' || substr(md5(NEW.region || '|' || NEW.level || '|' || NEW.name), 1, 16), NEW.name,
                (ARRAY['unit_contact', 'grid_worker', 'micro_station', 'fire_brigade'])[NEW.level + 1],
                ARRAY[mx_v1_webhook_channel(NEW.webhook, NEW.updated_by)],
                CASE WHEN NEW.region = '' THEN '{}'::text[] ELSE ARRAY[NEW.region] END,
                'v1_escalation_contact', NEW.updated_by)
        ON CONFLICT (responder_id) DO UPDATE
           SET name = EXCLUDED.name, role = EXCLUDED.role, channels = EXCLUDED.channels, regions = EXCLUDED.regions,
               updated_by = EXCLUDED.updated_by, updated_at = now(), deleted_at = NULL;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER region_contacts_v2 AFTER INSERT OR UPDATE OR DELETE ON region_contacts
    FOR EACH ROW EXECUTE FUNCTION mx_v1_escalation_contact_sync();

CREATE FUNCTION mx_v1_unit_contact_sync() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept text[];
BEGIN
    WITH c AS (
        SELECT 'v1-unit-' || substr(md5(NEW.unit_id || '|' || (c ->> 'webhook') || '|' || coalesce(c ->> 'name', '')),
                                    1, 16) AS id,
               coalesce(c ->> 'name', 'unit contact') AS name, c ->> 'phone' AS phone, c ->> 'webhook' AS webhook
          FROM jsonb_array_elements(CASE WHEN jsonb_typeof(NEW.contacts) = 'array' THEN NEW.contacts
                                         ELSE '[]'::jsonb END) c
         WHERE jsonb_typeof(c -> 'webhook') = 'string'),
    upserted AS (
        INSERT INTO responders (responder_id, name, role, phone, channels, unit_ids, origin, updated_by)
        SELECT id, name, 'unit_contact', phone, ARRAY[mx_v1_webhook_channel(webhook, 'units')], ARRAY[NEW.unit_id],
               'v1_unit_contact', 'units'
          FROM c
        ON CONFLICT (responder_id) DO UPDATE
           SET name = EXCLUDED.name, phone = EXCLUDED.phone, channels = EXCLUDED.channels, updated_at = now(),
               deleted_at = NULL
        RETURNING responder_id)
    SELECT coalesce(array_agg(responder_id), '{}') INTO kept FROM upserted;
    PERFORM mx_retire_responder(r.responder_id) FROM responders r
      WHERE r.origin = 'v1_unit_contact' AND r.unit_ids = ARRAY[NEW.unit_id] AND r.deleted_at IS NULL
        AND NOT r.responder_id = ANY(kept);
    RETURN NULL;
END $$;
CREATE TRIGGER units_contacts_v2 AFTER INSERT OR UPDATE OF contacts ON units
    FOR EACH ROW EXECUTE FUNCTION mx_v1_unit_contact_sync();

-- v1's contact resolution is the responders' now (alerting.response.targets).
DROP FUNCTION mx_escalation_contacts(text, text, integer);
