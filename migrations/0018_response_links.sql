-- Every message carries a live link: a binding (alarm, responder or group channel) may hold several
-- tokens, so a later message (an upgrade, a digest) never kills the link of an earlier one. What a
-- person does is recorded once per binding and action, whichever of its links they used.
DROP INDEX response_tokens_binding_idx;
CREATE INDEX response_tokens_binding_idx
    ON response_tokens (alarm_id, coalesce(responder_id, ''), coalesce(group_channel, ''));
DROP INDEX responder_actions_once_idx;
CREATE UNIQUE INDEX responder_actions_once_idx
    ON responder_actions (alarm_id, coalesce(responder_id, ''), coalesce(group_channel, ''), action);
