-- When a done move's old copy is due for deletion (Unix milliseconds;
-- NULL for moves that have none pending), so that the worker finds them
-- without reading every move.
ALTER TABLE project_moves ADD COLUMN due_at BIGINT;
CREATE INDEX project_moves_due ON project_moves (due_at);
