-- The notifier claims per recipient (issue 17): all of a recipient's due rows together, so a
-- digest carries every alarm held for it. These indexes keep each step of serving a recipient
-- an index lookup instead of a scan of the whole table during an alarm storm.

-- Due rows grouped by recipient (the claim), and the rows a digest carries (`digest_of`).
CREATE INDEX notifications_due_recipient_idx
    ON notifications ((coalesce(responder_id, '')), (coalesce(group_channel, '')), next_at)
    WHERE state = 'queued' AND digest_of IS NULL;
CREATE INDEX notifications_digest_idx ON notifications (digest_of) WHERE digest_of IS NOT NULL;
-- A recipient's last message (the digest hold).
CREATE INDEX notifications_responder_sent_idx
    ON notifications (responder_id, sent_at) WHERE state IN ('sent', 'acked') AND responder_id IS NOT NULL;
CREATE INDEX notifications_group_sent_idx
    ON notifications (group_channel, sent_at) WHERE state IN ('sent', 'acked') AND group_channel IS NOT NULL;
-- A group robot's attempts of the last minute (its 20 a minute).
CREATE INDEX notification_sends_channel_at_idx ON notification_sends (channel, at);
