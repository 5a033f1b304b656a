-- Open connections must learn that their token was revoked, deleted or got
-- another expiry (contract §10: closed with 4001 within 1 s), whichever
-- process changed it (`basestation token revoke` runs beside the broker).
-- The triggers log every such change; the broker polls the log by seq, a
-- range read on the primary key that finds nothing almost every time.
-- AUTOINCREMENT: a seq is never handed out twice, even after old rows are
-- deleted, so the broker's "seen up to" mark stays valid.
CREATE TABLE token_changes (
	seq  INTEGER PRIMARY KEY AUTOINCREMENT,
	hash BLOB NOT NULL                    -- tokens.hash of the changed token
);

CREATE TRIGGER tokens_changed AFTER UPDATE OF revoked_at, expires_at ON tokens
WHEN NEW.revoked_at IS NOT OLD.revoked_at OR NEW.expires_at IS NOT OLD.expires_at
BEGIN
	INSERT INTO token_changes (hash) VALUES (NEW.hash);
END;

CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens
BEGIN
	INSERT INTO token_changes (hash) VALUES (OLD.hash);
END;
