-- prune_workflows: workflows older than %(before)s with no step left (pruned with
-- their tasks); one probe of offload_task_workflow each.
DELETE FROM offload_workflow
WHERE backend = %(backend)s AND created_at < %(before)s
  AND NOT EXISTS (SELECT 1 FROM offload_task AS t WHERE t.workflow_id = offload_workflow.id)
