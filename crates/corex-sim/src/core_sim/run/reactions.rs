//! How a virtual node reacts to what it hears, as the node agent does: registered, it asks
//! for work; given work, it computes it (for real) and sends the result after its compute
//! time, unless it crashes first; told to wait, it long-polls until woken or its retry time;
//! refused by a coordinator that is down, it tries again; banned, it stops.

use corex_coordinator::CoordinatorError;
use corex_coordinator::core::Answer;
use corex_core::Fragment;
use corex_core::messages::LeaseResponse;
use corex_core::tensor::bytes_to_f32s;
use rand::Rng;

use super::{Doing, Happening, Heard, Message, NODE_DOWNTIME_MS, RETRY_MS, Sim};

impl Sim<'_> {
    pub(super) fn hear(&mut self, node: usize, heard: Heard) -> Result<(), String> {
        let doing = self.nodes[node].doing;
        let answer = match heard {
            Heard::Refused => return self.try_again(node, doing),
            Heard::Answer(answer) => answer,
        };
        match (doing, answer) {
            (_, Err(CoordinatorError::Banned(_))) => {
                self.nodes[node].doing = Doing::Stopped;
                self.results.remove(&node);
            }
            (Doing::Registering, Ok(Answer::Registered(_))) => self.ask_for_work(node),
            (Doing::Asking, Ok(Answer::Lease(LeaseResponse::Work { fragment, .. }))) => {
                self.work_on(node, &fragment)?
            }
            (Doing::Asking, Ok(Answer::Lease(LeaseResponse::Idle { retry_ms }))) => {
                let sim_node = &mut self.nodes[node];
                sim_node.doing = Doing::Waiting;
                sim_node.generation += 1;
                let generation = sim_node.generation;
                self.agenda.at(
                    self.now + retry_ms.max(1),
                    Happening::Wake { node, generation },
                );
            }
            (Doing::Working, Ok(Answer::Done)) => {
                self.results.remove(&node);
                self.ask_for_work(node);
            }
            // A result refused for what it is (closed, stale, already taken): on to new work.
            (Doing::Working, Err(error)) if error.status() < 500 => {
                self.results.remove(&node);
                self.ask_for_work(node);
            }
            (doing, Err(CoordinatorError::UnregisteredNode(_))) if doing != Doing::Down => {
                self.nodes[node].doing = Doing::Registering;
                self.results.remove(&node);
                self.send(node, Message::Register, RETRY_MS);
            }
            (doing, _) => return self.try_again(node, doing),
        }
        Ok(())
    }

    fn ask_for_work(&mut self, node: usize) {
        self.nodes[node].doing = Doing::Asking;
        self.send(node, Message::Lease, 0);
    }

    /// Sends `message` from `node` after `after_ms` and a network delay.
    fn send(&mut self, node: usize, message: Message, after_ms: u64) {
        let at = self.now + after_ms + self.delay();
        self.agenda.at(at, Happening::Arrive { node, message });
    }

    /// The coordinator could not answer: the same request again, a little later.
    fn try_again(&mut self, node: usize, doing: Doing) -> Result<(), String> {
        match doing {
            Doing::Registering => self.send(node, Message::Register, RETRY_MS),
            Doing::Asking | Doing::Waiting => {
                self.nodes[node].doing = Doing::Asking;
                self.send(node, Message::Lease, RETRY_MS);
            }
            Doing::Working => match self.results.remove(&node) {
                Some(computed) => self.send(node, Message::Result(computed), RETRY_MS),
                None => self.ask_for_work(node),
            },
            Doing::Down | Doing::Stopped => {}
        }
        Ok(())
    }

    /// Computes a leased fragment (or crashes first, by the fault plan) and sends the result
    /// after the node's compute time.
    fn work_on(&mut self, node: usize, fragment: &Fragment) -> Result<(), String> {
        let crash_ppm = self.config.faults.node_crash_ppm;
        if crash_ppm > 0 && self.rng.random_range(0..1_000_000) < crash_ppm {
            self.faults.node_crashes += 1;
            let sim_node = &mut self.nodes[node];
            sim_node.doing = Doing::Down;
            sim_node.generation += 1;
            let generation = sim_node.generation;
            self.agenda.at(
                self.now + NODE_DOWNTIME_MS,
                Happening::Wake { node, generation },
            );
            return Ok(());
        }
        // The model is fetched from the coordinator: one that went down (or no longer
        // publishes that version) leaves the fragment to expire, as a node agent does.
        let model = self.process.running.as_ref().and_then(|running| {
            let blob = running.core.engine().blobs.get(&fragment.model).ok()?;
            Some(blob.bytes.clone())
        });
        let Some(model) = model else {
            self.nodes[node].doing = Doing::Asking;
            self.send(node, Message::Lease, RETRY_MS);
            return Ok(());
        };
        let parameters = bytes_to_f32s(&model).map_err(|error| error.to_string())?;
        let running = self.process.running.as_ref().ok_or("no coordinator")?;
        let engine = running.core.engine();
        let spec = &engine.job(&fragment.job).map_err(|e| e.to_string())?.spec;
        let sim_node = &self.nodes[node];
        let computed = sim_node
            .compute(spec, &parameters, &self.dataset, fragment)
            .map_err(|error| format!("a node could not compute: {error}"))?;
        if sim_node.lies_about(fragment) {
            match sim_node.behaviour {
                super::Behaviour::LyingAuditor => self.faults.auditor_lies += 1,
                _ => self.faults.lies += 1,
            }
        }
        let compute_ms = sim_node.compute_ms(fragment);
        self.nodes[node].doing = Doing::Working;
        self.send(node, Message::Result(Box::new(computed)), compute_ms);
        Ok(())
    }
}
