# Failures: retries with one webhook-id, 410, timeouts, Retry-After, the end
# of the schedule, redelivery, disabling after failing too long, blocked networks.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('retry', conf => "webhook.timeout = '1s'\nwebhook.disable_after = 0\n");
my $recv = start_receiver(paths => {
	'/flaky' => { statuses => [ 500, 500 ] },
	'/gone' => { status => 410 },
	'/slow' => { delays => [ 3 ] },
	'/busy' => { statuses => [ 503 ], headers => { 'Retry-After' => '2' } },
	'/broken' => { status => 500, body => 'internal error' },
	'/redirect' => { status => 302, headers => { Location => '/elsewhere' } },
});

my %ep;
for my $p (qw(flaky gone busy broken redirect))
{
	$ep{$p} = create_endpoint($node, $recv->url("/$p"), events => "'{t_$p}'");
}
$ep{slow} = create_endpoint($node, $recv->url('/slow'), events => "'{t_slow}'");

sub delivery
{
	my ($p) = @_;
	return $node->safe_psql('postgres',
		"SELECT status || '|' || attempts || '|' || coalesce(response_status::text, '') || '|' || coalesce(last_error, '')
		   FROM webhook.delivery WHERE endpoint_id = $ep{$p} ORDER BY id DESC LIMIT 1");
}

# 500, 500, 200: three attempts, one webhook-id, then delivered.
$node->safe_psql('postgres', "SELECT webhook.emit('t_flaky', '{}')");
ok($recv->wait_for_deliveries(3, '/flaky'), 'flaky endpoint tried three times');
ok(wait_until(sub { delivery('flaky') =~ /^delivered/ }), 'and the delivery is delivered');
my @f = $recv->deliveries('/flaky');
is(scalar(@f), 3, 'exactly three attempts');
is(join(',', map { $_->{status} } @f), '500,500,200', 'answered 500, 500, 200');
is(scalar(keys %{ { map { $_->{headers}{'webhook-id'} => 1 } @f } }), 1, 'one webhook-id across retries');
is(delivery('flaky'), 'delivered|3|200|', 'recorded: 3 attempts, status 200');
cmp_ok($f[1]{time} - $f[0]{time}, '>=', 0.75, 'backoff between attempts (1s -20%)');
# Attempts 1 and 3 are two backoffs (at least 0.8 s each) apart, so their
# unix-second timestamps differ if each attempt is stamped when it is sent.
my $flaky_secret = $node->safe_psql('postgres', "SELECT secret FROM webhook.endpoint WHERE id = $ep{flaky}");
isnt($f[0]{headers}{'webhook-timestamp'}, $f[2]{headers}{'webhook-timestamp'}, 'each attempt stamped anew');
isnt($f[0]{headers}{'webhook-signature'}, $f[2]{headers}{'webhook-signature'} // '', 'each attempt signed anew');
is(scalar(grep { verify_signature($flaky_secret, $_) } @f), 3, 'every attempt signed over its own timestamp');

# 410 Gone disables the endpoint; nothing more is sent to it.
$node->safe_psql('postgres', "SELECT webhook.emit('t_gone', '{}')");
ok(wait_until(sub { delivery('gone') =~ /^failed/ }), '410 fails the delivery');
is(delivery('gone'), 'failed|1|410|HTTP 410', 'at once, without retries');
ok($node->poll_query_until('postgres',
	"SELECT state || '|' || state_reason FROM webhook.endpoint WHERE id = $ep{gone}",
	'disabled|the endpoint answered 410 Gone'), '410 disables the endpoint');
my $gone2 = $node->safe_psql('postgres', "SELECT webhook.emit('t_gone', '{}')");
# once that event is fanned out and whatever it made has an outcome
ok(wait_events_done($node, $gone2), 'a later event for the disabled endpoint is fanned out');
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook.delivery WHERE endpoint_id = $ep{gone}"),
	'1', 'the disabled endpoint gets no new delivery');
is(scalar($recv->deliveries('/gone')), 1, 'and no request');

# A request that times out is retried; the next attempt succeeds.
$node->safe_psql('postgres', "SELECT webhook.emit('t_slow', '{}')");
ok(wait_until(sub { delivery('slow') =~ /^delivered/ }), 'timed-out delivery delivered on retry');
like(delivery('slow'), qr/^delivered\|2\|200\|/, 'after two attempts');
is(scalar($recv->deliveries('/slow')), 2, 'the receiver saw both');

# 503 with Retry-After: 2 waits at least two seconds, more than the schedule's 1s.
$node->safe_psql('postgres', "SELECT webhook.emit('t_busy', '{}')");
ok($recv->wait_for_deliveries(2, '/busy'), 'busy endpoint retried');
my @b = $recv->deliveries('/busy');
cmp_ok($b[1]{time} - $b[0]{time}, '>=', 1.9, 'Retry-After honoured');

# A 3xx is a failure (redirects are not followed).
$node->safe_psql('postgres', "SELECT webhook.emit('t_redirect', '{}')");
ok($recv->wait_for_deliveries(1, '/redirect'), 'redirecting endpoint tried');
ok(wait_until(sub { delivery('redirect') =~ /\|302\|HTTP 302$/ }), '302 recorded as a failure');
is(scalar(grep { $_->{path} eq '/elsewhere' } $recv->requests), 0, 'redirect not followed');

# Always 500: the schedule (3 retries) is used up, then failed, with what came back.
$node->safe_psql('postgres', "SELECT webhook.emit('t_broken', '{}')");
ok(wait_until(sub { delivery('broken') =~ /^failed/ }), 'always-failing delivery ends failed');
is(delivery('broken'), 'failed|4|500|HTTP 500', 'after 1 + 3 attempts');
is($node->safe_psql('postgres', "SELECT response_body FROM webhook.delivery WHERE endpoint_id = $ep{broken}"),
	'internal error', 'the response body is kept');

# Failing with no success for longer than disable_after disables the endpoint.
is($node->safe_psql('postgres', "SELECT state FROM webhook.endpoint WHERE id = $ep{broken}"), 'verified',
	'disable_after = 0 never disables');
$node->append_conf('postgresql.conf', "webhook.disable_after = '1s'");
$node->reload;
ok(wait_until(sub { $node->safe_psql('postgres', 'SHOW webhook.disable_after') eq '1s' }), 'disable_after reloaded');
$node->safe_psql('postgres', "SELECT webhook.emit('t_broken', '{}')");
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT state FROM webhook.endpoint WHERE id = $ep{broken}") eq 'disabled' }),
	'endpoint failing for longer than disable_after is disabled');
like($node->safe_psql('postgres', "SELECT state_reason FROM webhook.endpoint WHERE id = $ep{broken}"),
	qr/^failing with no success since /, 'with the reason');

# Redeliver: a new delivery of the same event, same webhook-id.
$recv->set_script(paths => { '/broken' => { status => 200 } });
$node->safe_psql('postgres', "SELECT webhook.enable_endpoint($ep{broken})");
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT state FROM webhook.endpoint WHERE id = $ep{broken}") eq 'verified' }),
	're-enabled endpoint verified again');
my $failed = $node->safe_psql('postgres',
	"SELECT id FROM webhook.delivery WHERE endpoint_id = $ep{broken} AND status = 'failed' ORDER BY id LIMIT 1");
my $wid = $node->safe_psql('postgres',
	"SELECT 'msg_' || event_id || '_' || endpoint_id FROM webhook.delivery WHERE id = $failed");
my $same = sub { scalar(grep { $_->{headers}{'webhook-id'} eq $wid } $recv->deliveries('/broken')) };
my $n = $same->();
# A retry due in an hour: the worker's next due time is far off, and the
# redelivery must not wait for it (nor for its periodic full check, 10 s).
$node->safe_psql('postgres',
	"INSERT INTO webhook.delivery (endpoint_id, event_id, event, next_attempt_at)
	 SELECT endpoint_id, event_id, event, now() + interval '1 hour' FROM webhook.delivery WHERE id = $failed");
$node->safe_psql('postgres', "UPDATE webhook.endpoint SET updated_at = now() WHERE id = $ep{broken}");
ok(wait_until(sub {
	$node->safe_psql('postgres',
		"SELECT count(*) FROM webhook.delivery WHERE status = 'pending' AND next_attempt_at < now() + interval '30 minutes'") == 0 }),
	'no other retry pending');
# Events delivered and recorded after that tell us the worker has seen it
# (the first success also clears failing_since, itself an endpoint change).
for my $i (1, 2)
{
	my $ev = $node->safe_psql('postgres', "SELECT webhook.emit('t_broken', '{\"seen\": $i}')");
	ok(wait_until(sub {
		$node->safe_psql('postgres', "SELECT status FROM webhook.delivery WHERE event_id = $ev") eq 'delivered' }),
		"event $i delivered and recorded");
}
$n = $same->();
my $new = $node->safe_psql('postgres', "SELECT webhook.redeliver($failed)");
isnt($new, $failed, 'redeliver makes a new delivery');
ok($n > 0, 'the failed delivery had reached the receiver');
# "At once": the worker just ran rounds for the two events, and without a
# wake-up the redelivery would wait for its next full check, every 10 s;
# 5 s is a generous bound for a wake-up on a loaded machine.
ok(wait_until(sub { $same->() > $n }, 5), 'redelivered at once (within 5 s, not at the 10 s full check), with the same webhook-id');
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT status FROM webhook.delivery WHERE id = $new") eq 'delivered' }),
	'and recorded as delivered');

# A delivery made due by hand, with no signal to the worker, is found by its
# periodic full check.
$node->safe_psql('postgres',
	"UPDATE webhook.delivery SET status = 'pending', next_attempt_at = now() WHERE id = $failed");
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT status FROM webhook.delivery WHERE id = $failed") eq 'delivered' }),
	'a delivery made pending by hand is sent');
$node->safe_psql('postgres', "DELETE FROM webhook.delivery WHERE status = 'pending' AND next_attempt_at > now() + interval '30 minutes'");

# webhook.blocked_networks refuses loopback after a reload.
$node->append_conf('postgresql.conf', "webhook.blocked_networks = '10.0.0.0/8, 127.0.0.0/8'");
$node->reload;
ok(wait_until(sub {
	$node->safe_psql('postgres', 'SHOW webhook.blocked_networks') =~ /127/ }), 'setting reloaded');
$node->safe_psql('postgres', "SELECT webhook.emit('t_flaky', '{}')");
ok(wait_until(sub { delivery('flaky') =~ /blocked_networks/ }), 'a blocked address is refused');
like(delivery('flaky'), qr/^pending\|1\|\|.*webhook\.blocked_networks/, 'and retried later, with the reason');
is(scalar($recv->deliveries('/flaky')), 3, 'nothing reached the receiver');

$recv->stop;
$node->stop;
done_testing();
