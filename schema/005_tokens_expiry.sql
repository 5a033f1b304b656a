-- Tokens that expired long ago are deleted by the broker (in small batches,
-- a day after their expiry): this index finds them without a scan, and
-- costs nothing for tokens that never expire.
CREATE INDEX tokens_expiry ON tokens (expires_at) WHERE expires_at IS NOT NULL;
