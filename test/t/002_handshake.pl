# The url_verification handshake: the three answer forms, wrong answers,
# re-verification on a URL change, and unverified endpoints get nothing.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('handshake');
my $recv = start_receiver(paths => {
	'/raw' => { handshake => 'raw' },
	'/quoted' => { handshake => 'quoted' },
	'/json' => { handshake => 'json' },
	'/wrong' => { handshake => 'wrong' },
	'/forbidden' => { handshake => 'status:403' },
	'/flaky' => { handshake => 'status:503' },
});

sub state_of
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT state || '|' || coalesce(state_reason, '') FROM webhook.endpoint WHERE id = $id");
}

sub wait_state
{
	my ($id, $state) = @_;
	return wait_until(sub { state_of($id) =~ /^$state\|/ }, undef, "endpoint $id $state");
}

my %id;
for my $form (qw(raw quoted json))
{
	my $id = $node->safe_psql('postgres',
		"SELECT id FROM webhook.create_endpoint('" . $recv->url("/$form") . "')");
	$id{$form} = $id;
	ok(wait_state($id, 'verified'), "$form answer verifies");
	is($node->safe_psql('postgres', "SELECT verified_at IS NOT NULL FROM webhook.endpoint WHERE id = $id"),
		't', "$form: verified_at set");
}

my $wrong = $node->safe_psql('postgres',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/wrong') . "')");
ok(wait_state($wrong, 'unverified'), 'a wrong answer makes the endpoint unverified');
is(state_of($wrong), 'unverified|handshake reply did not echo the challenge', 'with the reason');

my $forbidden = $node->safe_psql('postgres',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/forbidden') . "')");
ok(wait_state($forbidden, 'unverified'), 'a 403 makes the endpoint unverified');
is(state_of($forbidden), 'unverified|handshake answered HTTP 403', 'with the status as reason');

# A 503 is a server in trouble: retried on the schedule (1s,1s,1s), then unverified.
my $flaky = $node->safe_psql('postgres',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/flaky') . "')");
ok(wait_until(sub { scalar($recv->handshakes('/flaky')) >= 2 }), '503 handshake is retried');
ok(wait_state($flaky, 'unverified'), 'then gives up');
is(scalar($recv->handshakes('/flaky')), 4, 'after the first try and three retries');
like(state_of($flaky), qr/^unverified\|handshake failed: HTTP 503$/, 'reason names the status');

# A refused connection is retried too, and the reason says why.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $down = $node->safe_psql('postgres',
	"SELECT id FROM webhook.create_endpoint('http://127.0.0.1:$port/down')");
ok(wait_until(sub { state_of($down) =~ /will retry/ }), 'refused handshake scheduled again');
like(state_of($down), qr/^pending\|handshake failed, will retry: .*(refused|connect)/i,
	'reason gives the transport error');

# Only verified endpoints receive events.
$node->safe_psql('postgres', "INSERT INTO message (channel_id, content) VALUES ('c', 'hello')");
ok($recv->wait_for_deliveries(1, '/json'), 'verified endpoint got the event');
ok($recv->wait_for_deliveries(1, '/raw') && $recv->wait_for_deliveries(1, '/quoted'), 'all verified endpoints did');
# Once the queue is empty and no delivery is pending, whatever was sent for
# the event has been answered, so logged: a request to an unverified
# endpoint would be in the log by now.
ok(wait_idle($node), 'the event is fanned out and every delivery of it recorded');
is(scalar($recv->deliveries('/wrong')) + scalar($recv->deliveries('/forbidden'))
	+ scalar($recv->deliveries('/flaky')), 0, 'unverified endpoints received nothing');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM webhook.delivery WHERE endpoint_id IN ($wrong, $forbidden, $flaky)"),
	'0', 'and have no deliveries');

# Changing the URL (or the token) re-runs the handshake.
is($node->safe_psql('postgres', "SELECT state FROM webhook.alter_endpoint($wrong, url => '" . $recv->url('/raw') . "')"),
	'pending', 'URL change puts the endpoint back to pending');
ok(wait_state($wrong, 'verified'), 'and the new URL verifies');
my $n = scalar($recv->handshakes('/raw'));
$node->safe_psql('postgres', "SELECT webhook.alter_endpoint($wrong, token => 'new-token')");
ok(wait_until(sub { scalar($recv->handshakes('/raw')) > $n }), 'token change re-verifies');
ok(wait_state($wrong, 'verified'), 'verified again');
# every handshake since the change (those after the first $n, all answered
# before it) carries the new token
my @since = ($recv->handshakes('/raw'))[ $n .. scalar($recv->handshakes('/raw')) - 1 ];
ok(@since && !grep({ $_->{body} !~ /"token": "new-token"/ } @since), 'with the new token')
  or diag(join("\n", map { $_->{body} } @since));

# verify_endpoint runs the handshake again now.
$n = scalar($recv->handshakes('/json'));
$node->safe_psql('postgres', "SELECT webhook.verify_endpoint($id{json})");
ok(wait_until(sub { scalar($recv->handshakes('/json')) > $n }), 'verify_endpoint sends a handshake');
ok(wait_state($id{json}, 'verified'), 'and the endpoint is verified again');

# verify => false needs no handshake.
$n = scalar($recv->handshakes('/wrong'));
my $trusted = $node->safe_psql('postgres',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/wrong') . "', verify => false)");
is((split /\|/, state_of($trusted))[0], 'verified', 'verify => false is verified at once');
my $ping = $node->safe_psql('postgres', "SELECT webhook.emit('ping', '{}')");
ok($recv->wait_for_deliveries(1, '/wrong'), 'and receives events');
# A handshake would have been claimed no later than the first event's
# delivery (the endpoint was verified before it was emitted). Barrier: that
# event recorded, then a second one emitted after it arrived and recorded;
# anything started before them has been answered and logged.
ok(wait_events_done($node, $ping), 'the event is recorded');
my $ping2 = $node->safe_psql('postgres', "SELECT webhook.emit('ping', '{\"n\": 2}')");
ok($recv->wait_for_deliveries(2, '/wrong') && wait_events_done($node, $ping2), 'a second event delivered and recorded');
is(scalar($recv->handshakes('/wrong')), $n, 'without a handshake');

$recv->stop;
$node->stop;
done_testing();
