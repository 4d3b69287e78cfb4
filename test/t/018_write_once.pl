# Deliveries written once: when every endpoint of an event has room, the
# event stays in webhook.queue while its requests are in flight, with no
# delivery row; when its first result comes back, its deliveries are
# inserted with their outcomes and the queue row deleted. An endpoint that
# answers gets rows that are never updated; a slow endpoint beside it gets a
# row in flight, updated when it answers, and does not hold up the other's
# record. (A crash while events are held is 004's: they are all sent.)
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('once', conf => "webhook.timeout = '60s'\n");
my $recv = start_receiver(paths => { '/hole' => { blackhole => JSON::PP::true } });
my $hook = create_endpoint($node, $recv->url('/hook'), events => "'{a,c}'");
my $hole = $node->safe_psql('postgres',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/hole') . "', events => '{b,c}', verify => false)");

# 1. 200 events to an endpoint that answers: 200 rows inserted, none updated,
# one per event, delivered.
my $stats = "SELECT n_tup_ins || ' ' || n_tup_upd FROM pg_stat_user_tables WHERE relid = 'webhook.delivery'::regclass";
my ($ins0, $upd0) = split / /, $node->safe_psql('postgres', $stats);
$node->safe_psql('postgres', "SELECT webhook.emit('a', jsonb_build_object('i', g)) FROM generate_series(1, 200) g");
ok($recv->wait_for_deliveries(200, '/hook'), '200 events delivered');
ok(wait_idle($node), 'and recorded');
is($node->safe_psql('postgres',
	"SELECT count(*) || ' ' || count(DISTINCT event_id) || ' ' || count(*) FILTER (WHERE status = 'delivered' AND attempts = 1 AND NOT in_flight AND response_status = 200)
	   FROM webhook.delivery WHERE endpoint_id = $hook"),
	'200 200 200', 'one delivered row per event, attempted once');
# the worker's statistics reach pg_stat at its next flush (its idle round at
# the latest)
ok(wait_until(sub {
	my ($ins, $upd) = split / /, $node->safe_psql('postgres', "SELECT pg_stat_clear_snapshot(); $stats");
	return $ins - $ins0 >= 200;
}), 'the rows were inserted');
my ($ins1, $upd1) = split / /, $node->safe_psql('postgres', "SELECT pg_stat_clear_snapshot(); $stats");
is($ins1 - $ins0, 200, 'each once');
is($upd1 - $upd0, 0, 'and never updated');

# 2. An event whose only endpoint never answers stays in the queue, with no
# delivery row, while its request is in flight.
my $b = $node->safe_psql('postgres', "SELECT webhook.emit('b', '{}')");
ok(wait_until(sub { scalar($recv->deliveries('/hole')) >= 1 }), 'the request is in flight');
is($node->safe_psql('postgres',
	"SELECT (SELECT count(*) FROM webhook.queue WHERE id = $b) || ' ' || (SELECT count(*) FROM webhook.delivery WHERE event_id = $b)"),
	'1 0', 'its event is still queued, and no delivery row is written');

# 3. An event to both: the endpoint that answers has its delivery recorded
# (and the event leaves the queue) while the other's request is still in
# flight, with a row in flight.
my $c = $node->safe_psql('postgres', "SELECT webhook.emit('c', '{}')");
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT count(*) FROM webhook.delivery WHERE event_id = $c AND endpoint_id = $hook AND status = 'delivered'") == 1
}), 'the answered delivery is recorded');
is($node->safe_psql('postgres',
	"SELECT (SELECT count(*) FROM webhook.queue WHERE id = $c) || ' ' ||
	        (SELECT string_agg(status || ' ' || in_flight || ' ' || attempts, ',') FROM webhook.delivery WHERE event_id = $c AND endpoint_id = $hole)"),
	'0 pending true 0', 'the event left the queue; the other endpoint\'s delivery is a row in flight');
my $sent_c = sub { scalar(grep { ($_->{headers}{'webhook-id'} // '') eq "msg_${c}_$hole" } $recv->deliveries('/hole')) };
ok(wait_until(sub { $sent_c->() >= 1 }), 'its request was sent');
is($sent_c->(), 1, 'once');
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook.delivery WHERE event_id = $c"), '2',
	'and each endpoint has one row');

# 4. Dropped from memory: events held for the blackholed endpoint, waiting
# for a slot (endpoint_concurrency 1, taken), are written as pending
# deliveries, not in flight and not attempted, when the endpoint is disabled.
my $offset = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET webhook.endpoint_concurrency = 1; SELECT pg_reload_conf()");
ok($node->wait_for_log(qr/webhook worker reloaded its settings/, $offset), 'one request per endpoint');
my $waiting = $node->safe_psql('postgres', "SELECT string_agg(webhook.emit('b', '{}')::text, ',') FROM generate_series(1, 3)");
# an event queued after them is claimed with them or after them
my $after = $node->safe_psql('postgres', "SELECT webhook.emit('a', '{}')");
ok(wait_until(sub {
	grep { ($_->{headers}{'webhook-id'} // '') eq "msg_${after}_$hook" } $recv->deliveries('/hook')
}), 'the events are claimed');
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook.queue WHERE id IN ($waiting)"), '3',
	'still queued while they wait');
$node->safe_psql('postgres', "SELECT webhook.disable_endpoint($hole, 'testing')");
ok($node->poll_query_until('postgres', "SELECT NOT EXISTS (SELECT FROM webhook.queue WHERE id IN ($waiting))"),
	'dropped, they leave the queue');
is($node->safe_psql('postgres',
	"SELECT string_agg(status || ' ' || in_flight || ' ' || attempts || ' ' || (attempted_at IS NULL), ',')
	   FROM webhook.delivery WHERE event_id IN ($waiting)"),
	'pending false 0 true,pending false 0 true,pending false 0 true',
	'as pending deliveries, never attempted');
is(scalar(grep { ($_->{headers}{'webhook-id'} // '') =~ /^msg_(\d+)_$hole$/ && ",$waiting," =~ /,$1,/ } $recv->deliveries('/hole')),
	0, 'none was sent');

done_testing();
