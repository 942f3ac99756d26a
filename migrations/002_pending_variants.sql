-- 002_pending_variants: find variants whose job may be lost (listStalePendingVariants).
CREATE INDEX variants_pending_idx ON variants (updated_at) WHERE state = 'pending';
